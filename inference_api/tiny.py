"""``build-tiny-model``: a randomly initialised pipeline of the real SD 1.x / SDXL classes, for tests and the demo.

Diffusers folder: ``DIR/NAME/`` (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
Single file: ``DIR/NAME.safetensors`` in the original (AUTOMATIC1111) layout plus ``DIR/configs/NAME/``, the
weightless diffusers config folder the runtime uses to load it offline (see ``inference_api.loading``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from inference_api.architectures import TINY_SD, TINY_SDXL, Architecture
from inference_api.tokenizer import write_tokenizer

CONFIGS_DIR = "configs"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def default_name(xl: bool, single_file: bool) -> str:
    base = TINY_SDXL.name if xl else TINY_SD.name
    return f"{base}-single" if single_file else base


def build_tiny_model(
    dest: Path, *, xl: bool = False, name: str | None = None, single_file: bool = False, seed: int = 0
) -> Path:
    """Write the tiny model under ``dest`` and return its path (folder or ``.safetensors`` file)."""
    arch = TINY_SDXL if xl else TINY_SD
    name = name or default_name(xl, single_file)
    dest.mkdir(parents=True, exist_ok=True)
    if single_file:
        return write_single_file(arch, dest, name, seed=seed)
    return write_folder(arch, dest / name, seed=seed)


def write_folder(arch: Architecture, folder: Path, *, seed: int = 0) -> Path:
    from inference_api.builder import build_pipeline

    pipe = build_pipeline(arch, seed=seed)
    _replace(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    _write_tokenizers(pipe, folder)
    return folder


def write_single_file(arch: Architecture, dest: Path, name: str, *, seed: int = 0) -> Path:
    from inference_api.builder import build_pipeline
    from inference_api.ldm import save_single_file

    pipe = build_pipeline(arch, seed=seed)
    config_folder = dest / CONFIGS_DIR / name
    write_config_folder(pipe, config_folder)
    return save_single_file(pipe, dest / f"{name}.safetensors")


def write_config_folder(pipe: object, folder: Path) -> Path:
    """A diffusers folder without weights: what ``from_single_file(config=...)`` needs to stay offline."""
    _replace(folder)
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            path.unlink()
    _write_tokenizers(pipe, folder)
    return folder


def _write_tokenizers(pipe: object, folder: Path) -> None:
    # save_pretrained writes tokenizer.json only; add the classic vocab.json + merges.txt pair too.
    for sub in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, sub, None) is not None:
            write_tokenizer(folder / sub)


def _replace(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
