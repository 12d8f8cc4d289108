"""``python -m queue_agent``: run the agent until SIGTERM or SIGINT.

Exit codes: 0 after a clean drain, 1 when the agent could not start or a stage crashed,
2 when the configuration is invalid.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from queue_agent import logs
from queue_agent.agent import run_agent
from queue_agent.settings import Settings, SettingsError, load_settings

log = logging.getLogger("queue_agent")


async def _serve(settings: Settings) -> int:
    stop, abort = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("signal received; draining", extra={"signal": signal.Signals(signum).name})
            stop.set()
        else:
            log.warning("second signal; aborting the running job", extra={"signal": signal.Signals(signum).name})
            abort.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return await run_agent(settings, stop, abort)


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"queue_agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return asyncio.run(_serve(settings))


if __name__ == "__main__":
    sys.exit(main())
