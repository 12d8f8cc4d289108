"""AUTOMATIC1111 ``alwayson_scripts``: which ones this runtime runs, and refusing the others.

A script the runtime does not run must not be ignored: an ``AnimateDiff`` request answered with still
images, or a ``ControlNet`` one generated without its control, would be a wrong result reported as a
success. So a request that asks for a script not listed here is refused (422, rule ``unsupported``),
and the task fails with a message that says why. A script entry that asks for nothing (no ``args``, or
every argument switched off with ``enable``/``enabled: false``, as webui clients send for idle units)
is accepted and noted in ``info`` as before.
"""

from __future__ import annotations

from typing import Any

# Scripts this runtime implements; add a name here when its implementation lands (GET /sdapi/v1/scripts
# lists these too, through Engine.script_names).
SUPPORTED_SCRIPTS: frozenset[str] = frozenset({"controlnet", "animatediff"})


def asks_for_something(script: Any) -> bool:
    """False only for an entry that is clearly switched off; anything unclear counts as a request."""
    if not isinstance(script, dict):
        return True
    args = script.get("args")
    if args is None or args == []:
        return bool(set(script) - {"args"})
    if not isinstance(args, list):
        return True
    return not all(isinstance(a, dict) and (a.get("enable") is False or a.get("enabled") is False) for a in args)


def unsupported_scripts(scripts: dict[str, Any]) -> list[str]:
    """Names of the scripts the request asks for that this runtime does not run (case-insensitive, as the webui)."""
    supported = {name.lower() for name in SUPPORTED_SCRIPTS}
    return sorted(
        name for name, script in scripts.items() if name.lower() not in supported and asks_for_something(script)
    )


def check_scripts(scripts: dict[str, Any]) -> dict[str, Any]:
    """The scripts as given, or ValueError naming the ones this runtime cannot run."""
    refused = unsupported_scripts(scripts)
    if refused:
        runs = ", ".join(sorted(SUPPORTED_SCRIPTS)) or "none"
        raise ValueError(
            f"this runtime does not run the alwayson script(s) {', '.join(refused)} (it runs: {runs}); "
            "the request would be answered without their effect, so it is refused"
        )
    return scripts
