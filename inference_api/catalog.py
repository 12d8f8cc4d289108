"""The catalog: models in the model directory (diffusers folders, single-file checkpoints, upscalers).

Discovery reads only ``model_index.json`` files and safetensors headers, never weights, so a directory on a
Mountpoint-for-S3 mount is scanned with small ranged reads.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inference_api.checkpoints import classify_checkpoint, read_header, safetensors_header
from inference_api.model_defaults import ModelDefaults, read_defaults

MAX_DEPTH = 4
CONFIGS_DIR = "configs"
UPSCALE_PIPELINES = frozenset({"StableDiffusionUpscalePipeline", "StableDiffusionLatentUpscalePipeline"})
# Folders where AUTOMATIC1111 keeps ESRGAN-family upscalers; .pth files are only trusted there.
UPSCALER_DIRS = frozenset({"esrgan", "realesrgan", "upscalers", "upscale_models"})

ModelKind = Literal["diffusers", "single_file"]


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint the runtime can load. ``name`` is its path relative to the model directory."""

    name: str
    path: Path
    kind: ModelKind
    family: str = ""  # single files: v1, v2, xl_base, xl_refiner, ..., unknown; folders: the pipeline class
    defaults: ModelDefaults | None = None  # a folder's generation_defaults.json (native size, steps)

    @property
    def model_name(self) -> str:
        return Path(self.name).stem if self.kind == "single_file" else Path(self.name).name

    @property
    def title(self) -> str:
        return self.name

    def describe(self, sha256: str | None = None) -> dict[str, Any]:
        """``sd-models`` item; ``sha256`` of a single file once known (A1111's ``hash`` is its first 10 digits)."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": sha256[:10] if sha256 else None,
            "sha256": sha256,
            "filename": str(self.path),
            "config": None,
        }


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class UpscalerEntry:
    name: str
    path: Path
    kind: Literal["esrgan"]


@dataclass
class Discovery:
    models: list[ModelEntry] = field(default_factory=list)
    upscalers: list[UpscalerEntry] = field(default_factory=list)


def is_esrgan_header(header: dict[str, Any]) -> bool:
    keys = header.keys()
    return "conv_first.weight" in keys or ("model.0.weight" in keys and any(k.startswith("model.1.sub.") for k in keys))


def discover(root: Path) -> Discovery:
    found = Discovery()
    if not root.is_dir():
        return found
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        if path.name == "model_index.json":
            folder = path.parent
            class_name = _read_class_name(path)
            folder_rel = folder.relative_to(root).as_posix()
            # Diffusion upscaler pipelines are not text-to-image checkpoints (and are not used as upscalers yet).
            if class_name not in UPSCALE_PIPELINES:
                found.models.append(
                    ModelEntry(folder_rel, folder, "diffusers", class_name or "", read_defaults(folder))
                )
        elif path.suffix == ".safetensors":
            try:
                header = safetensors_header(path)
            except (OSError, ValueError):
                continue
            family = classify_checkpoint(header)
            if family is not None:
                found.models.append(ModelEntry(rel, path, "single_file", family))
            elif is_esrgan_header(header):
                found.upscalers.append(UpscalerEntry(path.stem, path, "esrgan"))
        elif path.suffix == ".ckpt":
            try:
                family = classify_checkpoint(read_header(path))
            except (OSError, ValueError):
                continue
            if family is not None:
                found.models.append(ModelEntry(rel, path, "single_file", family))
        elif path.suffix == ".pth" and path.parent.name.lower() in UPSCALER_DIRS:
            found.upscalers.append(UpscalerEntry(path.stem, path, "esrgan"))
    found.models.sort(key=lambda m: m.name)
    found.upscalers.sort(key=lambda u: u.name)
    return found


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if "model_index.json" in filenames and here != root:
            dirnames[:] = []  # a diffusers folder's component files are not models of their own
            yield here / "model_index.json"
            continue
        at_root = here == root
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and depth < MAX_DEPTH and not (at_root and d == CONFIGS_DIR)
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def _read_class_name(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("_class_name") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _normalise(name: str) -> str:
    # A1111 titles carry a short hash: "model.safetensors [6ce0161689]".
    name = name.strip()
    if name.endswith("]") and " [" in name:
        name = name[: name.rindex(" [")]
    return name.replace("\\", "/").strip("/").lower()


class Catalog:
    """The discovered models and upscalers; refreshed on demand (refresh-checkpoints)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._found = Discovery()

    def refresh(self) -> Discovery:
        found = discover(self.root)
        with self._lock:
            self._found = found
        return found

    @property
    def models(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._found.models)

    @property
    def upscalers(self) -> list[UpscalerEntry]:
        with self._lock:
            return list(self._found.upscalers)

    def find(self, name: str) -> ModelEntry | None:
        """Match a title, relative path, file name or stem (case-insensitive, A1111 hash suffix ignored)."""
        wanted = _normalise(name)
        models = self.models
        for accessor in (
            lambda m: m.name,
            lambda m: m.path.name,
            lambda m: m.model_name,
            lambda m: str(m.path),
        ):
            for model in models:
                if _normalise(accessor(model)) == wanted:
                    return model
        return None

    def find_upscaler(self, name: str) -> UpscalerEntry | None:
        wanted = _normalise(name)
        for entry in self.upscalers:
            if _normalise(entry.name) == wanted or _normalise(entry.path.name) == wanted:
                return entry
        return None
