"""The model directory the local runtimes serve: the user's (``MODEL_DIR``) or a generated one, cached.

Generated models: ``toy`` (the default), the toy-world model trained here on first use (``build-toy-model``,
minutes; it draws coloured shapes as asked), or ``tiny``, random weights of the real architecture (seconds; its
images are noise), which the fast tests use. Each is built once per fingerprint of the code that builds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal

import inference_api
from local_stack.logs import LogSink
from local_stack.processes import ManagedProcess, StartError

MODEL_DIR_ENV = "MODEL_DIR"
_MARKER = ".local-stack-model"
GeneratedModel = Literal["toy", "tiny"]
GENERATED_MODELS: tuple[GeneratedModel, ...] = ("toy", "tiny")
# The sources whose change changes the toy model's weights (the whole package would rebuild it for any edit).
_TOY_SOURCES = ("toy.py", "toy_scenes.py", "tokenizer.py")


def builder_fingerprint(kind: GeneratedModel = "tiny") -> str:
    """Hash of the sources that build the model: a changed builder must not be served a stale cached model."""
    root = Path(inference_api.__file__).resolve().parent
    digest = hashlib.sha256(kind.encode())
    paths = sorted(root.rglob("*.py")) if kind == "tiny" else [root / name for name in _TOY_SOURCES]
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    if kind == "toy":  # trained weights also depend on the libraries' numerics
        for package in ("torch", "diffusers", "transformers"):
            digest.update(f"{package}=={metadata.version(package)}".encode())
    return digest.hexdigest()


def generated_model_dir(
    kind: GeneratedModel, cache: Path, sink: LogSink, env: dict[str, str], timeout: float = 1200.0
) -> Path:
    """Build the model once into ``cache`` (atomically: a half-built cache is never used)."""
    fingerprint = builder_fingerprint(kind)
    marker = cache / _MARKER
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        sink.write("stack", f"using cached {kind} model in {cache}")
        return cache
    staging = cache.with_name(f"{cache.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if kind == "toy":
        sink.write("stack", f"training the toy-world model into {cache} (first use only: a few minutes)")
    command = "build-toy-model" if kind == "toy" else "build-tiny-model"
    builder = ManagedProcess(
        "build-model", [sys.executable, "-m", "inference_api", command, str(staging)], env, sink
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


def resolve_model_dir(
    explicit: Path | None,
    caches: dict[GeneratedModel, Path],
    generated: GeneratedModel,
    sink: LogSink,
    env: dict[str, str],
) -> Path:
    chosen = explicit or (Path(os.environ[MODEL_DIR_ENV]) if os.environ.get(MODEL_DIR_ENV) else None)
    if chosen is None:
        return generated_model_dir(generated, caches[generated], sink, env)
    if not chosen.is_dir():
        raise StartError(f"model directory {chosen} does not exist (set by --models or ${MODEL_DIR_ENV})")
    sink.write("stack", f"serving models from {chosen}")
    return chosen.resolve()


def example_prompts(model_dir: Path) -> list[str]:
    """The prompts the served models suggest (``generation_defaults.json``), each once, in folder order."""
    from inference_api.catalog import discover

    prompts: list[str] = []
    for entry in discover(model_dir).models:
        for prompt in entry.defaults.example_prompts if entry.defaults is not None else ():
            if prompt not in prompts:
                prompts.append(prompt)
    return prompts
