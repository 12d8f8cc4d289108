"""``build-tiny-model``: a randomly initialised pipeline of the real SD 1.x / SDXL classes, for tests and the demo.

Diffusers folder: ``DIR/NAME/`` (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
Single file: ``DIR/NAME.safetensors`` in the original (AUTOMATIC1111) layout plus ``DIR/configs/NAME/``, the
weightless diffusers config folder the runtime uses to load it offline (see ``inference_api.loading``);
with ``no_configs`` the checkpoint alone, as downloaded.

``full_size``: the published SD 1.5 (or, with ``xl``, SDXL 1.0) dimensions instead of the tiny ones, with
fp16 random weights filled without the modules' initialisation schemes (a 2 GB SD 1.5 file in under a
minute of CPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from inference_api.architectures import SD15, SDXL, TINY_SD, TINY_SDXL, Architecture
from inference_api.catalog import CONFIGS_DIR
from inference_api.single_file import write_config_folder
from inference_api.tokenizer import write_clip_tokenizer, write_tokenizer


def architecture(*, xl: bool = False, full_size: bool = False) -> Architecture:
    if full_size:
        return SDXL if xl else SD15
    return TINY_SDXL if xl else TINY_SD


def default_name(xl: bool, single_file: bool, full_size: bool = False) -> str:
    base = architecture(xl=xl, full_size=full_size).name
    if full_size:
        base += "-random"
    return f"{base}-single" if single_file else base


def build_tiny_model(
    dest: Path,
    *,
    xl: bool = False,
    name: str | None = None,
    single_file: bool = False,
    seed: int = 0,
    full_size: bool = False,
    no_configs: bool = False,
) -> Path:
    """Write the model under ``dest`` and return its path (folder or ``.safetensors`` file)."""
    if no_configs and not single_file:
        raise ValueError("--no-configs applies to --single-file only (a diffusers folder carries its configs)")
    arch = architecture(xl=xl, full_size=full_size)
    name = name or default_name(xl, single_file, full_size)
    dest.mkdir(parents=True, exist_ok=True)
    # Full size: fp16 on disk (as the published checkpoints are) and no initialisation schemes.
    dtype = torch.float16 if full_size else torch.float32
    if single_file:
        return write_single_file(arch, dest, name, seed=seed, dtype=dtype, fast_init=full_size, configs=not no_configs)
    return write_folder(arch, dest / name, seed=seed, dtype=dtype, fast_init=full_size)


def write_folder(
    arch: Architecture, folder: Path, *, seed: int = 0, dtype: torch.dtype = torch.float32, fast_init: bool = False
) -> Path:
    from inference_api.builder import build_pipeline

    pipe = build_pipeline(arch, seed=seed, dtype=dtype, fast_init=fast_init)
    _replace(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    _write_tokenizers(arch, folder)
    return folder


def write_single_file(
    arch: Architecture,
    dest: Path,
    name: str,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    fast_init: bool = False,
    configs: bool = True,
    suffix: str = ".safetensors",
    metadata: dict[str, str] | None = None,
) -> Path:
    from inference_api.builder import build_pipeline
    from inference_api.ldm import save_single_file

    pipe = build_pipeline(arch, seed=seed, dtype=dtype, fast_init=fast_init)
    if configs:
        config_folder = dest / CONFIGS_DIR / name
        _replace(config_folder)
        write_config_folder(arch, config_folder)
    path = dest / f"{name}{suffix}"
    # Without configs: the file as users download it, schedule buffers included.
    return save_single_file(
        pipe, path, open_clip_text=arch.open_clip_text, metadata=metadata, as_downloaded=not configs
    )


def _write_tokenizers(arch: Architecture, folder: Path) -> None:
    # save_pretrained writes tokenizer.json only; add the classic vocab.json + merges.txt pair too.
    for _, tokenizer_slot, spec in arch.slots():
        if spec.vocabulary == "clip":
            write_clip_tokenizer(folder / tokenizer_slot, spec.pad_token)
        else:
            write_tokenizer(folder / tokenizer_slot)


def _replace(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
