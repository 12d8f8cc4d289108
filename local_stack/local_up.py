"""``sdq local up`` (and ``python -m local_stack up``): run the local stack in the foreground and record how
to reach it for ``sdq`` and scripts. It lives here, not in ``sdq``: sdq's client library never imports
the local stack; only ``sdq local ...`` does, lazily."""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from local_stack.models import GeneratedModel
from local_stack.stack import LocalStack, StackOptions
from sdq.client import Endpoint
from sdq.endpoints import LOCAL_FILE, write_local

# In the toy-world model's vocabulary (the default model); real checkpoints draw it too.
TRY_PROMPT = "a red circle on the left, a blue square on the right, on a white background"


def local_up(
    *,
    config: Path | None,
    models: Path | None,
    port: int,
    quiet: bool,
    out: TextIO,
    local_file: Path = LOCAL_FILE,
    stop: threading.Event | None = None,
    generated: GeneratedModel = "toy",
) -> int:
    """Start the stack, write ``local_file``, block until Ctrl-C/SIGTERM (or ``stop``), then tear down."""
    options = StackOptions(
        config_path=config, model_dir=models, generated_model=generated, api_port=port, console=not quiet
    )
    with LocalStack(options) as stack:
        endpoint = Endpoint(stack.api_url, stack.api_key, tuple(stack.runtime_names))
        # The AWS side too, for operator commands such as `sdq redrive` (moto: no real credentials involved).
        resources = asdict(stack.resources) if stack.resources is not None else None
        write_local(
            local_file,
            endpoint,
            page=f"{stack.api_url}/",
            log=str(stack.log_path),
            aws_endpoint=stack.aws_endpoint,
            resources=resources,
            webhook_secret=stack.webhook_secret,
        )
        try:
            out.write(
                f"\nlocal stack is up (Ctrl-C to stop)\n"
                f"  API       {stack.api_url}\n"
                f"  API key   {stack.api_key}\n"
                f"  runtimes  {', '.join(stack.runtime_names)}\n"
                f"  web page  {stack.page_url}\n"
                f"  logs      {stack.log_path}\n"
                f"  saved to  {local_file} (for sdq and scripts)\n\n"
                f'try:  sdq submit "{TRY_PROMPT}" --wait --download outputs\n'
            )
            out.flush()
            (stop or threading.Event()).wait()
        finally:
            # A stale file would point later sdq calls at a dead port.
            local_file.unlink(missing_ok=True)
    return 0
