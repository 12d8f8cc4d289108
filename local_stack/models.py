"""The model directory the local runtimes serve: the user's (``MODEL_DIR``) or a cached tiny test model."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import inference_api
from local_stack.logs import LogSink
from local_stack.processes import ManagedProcess, StartError

MODEL_DIR_ENV = "MODEL_DIR"
_MARKER = ".local-stack-model"


def builder_fingerprint() -> str:
    """Hash of the runtime package's sources: a changed builder must not be served a stale cached model."""
    root = Path(inference_api.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tiny_model_dir(cache: Path, sink: LogSink, env: dict[str, str], timeout: float = 300.0) -> Path:
    """Build the tiny model once into ``cache`` (atomically: a half-built cache is never used)."""
    fingerprint = builder_fingerprint()
    marker = cache / _MARKER
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        sink.write("stack", f"using cached tiny model in {cache}")
        return cache
    staging = cache.with_name(f"{cache.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    builder = ManagedProcess(
        "build-model", [sys.executable, "-m", "inference_api", "build-tiny-model", str(staging)], env, sink
    ).start()
    try:
        builder.wait_exit(timeout)
    except BaseException:
        builder.stop()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / _MARKER).write_text(fingerprint + "\n")
    shutil.rmtree(cache, ignore_errors=True)
    try:
        staging.rename(cache)
    except OSError:
        # Another stack finished building the same model first: keep its copy.
        shutil.rmtree(staging, ignore_errors=True)
        if not (marker.is_file() and marker.read_text().strip() == fingerprint):
            raise
    return cache


def resolve_model_dir(explicit: Path | None, cache: Path, sink: LogSink, env: dict[str, str]) -> Path:
    chosen = explicit or (Path(os.environ[MODEL_DIR_ENV]) if os.environ.get(MODEL_DIR_ENV) else None)
    if chosen is None:
        return tiny_model_dir(cache, sink, env)
    if not chosen.is_dir():
        raise StartError(f"model directory {chosen} does not exist (set by --models or ${MODEL_DIR_ENV})")
    sink.write("stack", f"serving models from {chosen}")
    return chosen.resolve()
