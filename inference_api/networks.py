"""AUTOMATIC1111's extra networks: ``<lora:NAME:W>`` tags in prompts, and the LoRA / embedding files on disk.

A1111 removes every ``<kind:args>`` tag from the prompt before encoding it, and applies the LoRAs named in
the prompt and the negative prompt to the whole batch. Files live under the model directory as in A1111:
``Lora/`` (``.safetensors``, kohya/A1111 key format) and ``embeddings/`` (``.safetensors`` textual
inversion). Pickled ``.pt``/``.ckpt`` files are never loaded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_api.checkpoints import read_header

LORA_DIR = "Lora"
EMBEDDINGS_DIR = "embeddings"
VAE_DIR = "VAE"
CONTROLNET_DIR = "ControlNet"
MOTION_DIR = "AnimateDiff"
_TAG = re.compile(r"<(\w+):([^>]+)>")
MAX_DEPTH = 3


_KINDS = (LORA_DIR, EMBEDDINGS_DIR, VAE_DIR, CONTROLNET_DIR, MOTION_DIR)


@dataclass(frozen=True)
class LoraUse:
    """One LoRA as a prompt asks for it: text-encoder and UNet multipliers (A1111: ``<lora:name:te:unet>``)."""

    name: str
    te: float
    unet: float


@dataclass(frozen=True)
class NetworkFile:
    name: str  # what prompts call it: the file stem
    path: Path
    metadata: dict[str, str]


def strip_tags(text: str) -> str:
    """The prompt as A1111 encodes it: extra-network tags removed."""
    return _TAG.sub("", text)


def lora_uses(texts: list[str]) -> tuple[list[LoraUse], list[str]]:
    """LoRAs asked for in ``texts`` (repeats add up, as A1111 applies each), and notes on tags not understood."""
    weights: dict[str, list[float]] = {}
    notes: list[str] = []
    for text in texts:
        for kind, args in _TAG.findall(text):
            if kind != "lora":
                notes.append(f"<{kind}:...> is not supported; removed from the prompt")
                continue
            parts = [p.strip() for p in args.split(":")]
            try:
                te = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
                unet = float(parts[2]) if len(parts) > 2 and parts[2] else te
            except ValueError:
                notes.append(f"<lora:{args}>: the multiplier is not a number; ignored")
                continue
            total = weights.setdefault(parts[0], [0.0, 0.0])
            total[0] += te
            total[1] += unet
    return [LoraUse(name, te, unet) for name, (te, unet) in sorted(weights.items())], notes


def tensor_data_sha256(path: Path) -> str:
    """sha256 of a safetensors file's bytes after its header (what A1111 and kohya call the addnet hash)."""
    import hashlib
    import struct

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        fh.seek(8 + length)
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scan_folders(folder: Path) -> list[NetworkFile]:
    """diffusers model folders (``config.json`` + weights) directly under ``folder``."""
    if not folder.is_dir():
        return []
    return [NetworkFile(p.name, p, {}) for p in sorted(folder.iterdir()) if (p / "config.json").is_file()]


def _scan(folder: Path) -> list[NetworkFile]:
    found: list[NetworkFile] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.safetensors")):
        if len(path.relative_to(folder).parts) > MAX_DEPTH or (path.parent / "config.json").is_file():
            continue  # too deep, or the weights of a diffusers folder (listed as the folder)
        try:
            metadata = read_header(path).metadata
        except (OSError, ValueError):
            continue
        found.append(NetworkFile(path.stem, path, metadata))
    return found


class NetworkCatalog:
    """The add-on files under the model directory (LoRAs, embeddings, VAEs, ControlNets, motion modules),
    as A1111 keeps them; rescanned on ``refresh``. Only ``.safetensors`` files are listed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._files: dict[str, dict[str, NetworkFile]] = {}
        self._hashes: dict[tuple[str, float], str] = {}

    def refresh(self) -> None:
        found = {kind: {f.name.lower(): f for f in _scan(self.root / kind)} for kind in _KINDS}
        for kind in (CONTROLNET_DIR, MOTION_DIR):  # diffusers folders (ControlNetModel, MotionAdapter)
            found[kind].update({f.name.lower(): f for f in _scan_folders(self.root / kind)})
        with self._lock:
            self._files = found

    def _list(self, kind: str) -> list[NetworkFile]:
        with self._lock:
            return list(self._files.get(kind, {}).values())

    def _find(self, kind: str, name: str) -> NetworkFile | None:
        with self._lock:
            files = self._files.get(kind, {})
        key = name.strip().lower()
        key = re.sub(r"\s*\[[0-9a-f]+\]$", "", key)  # A1111 titles carry " [hash]"
        for candidate in (key, Path(key).name, Path(key).stem):
            if candidate in files:
                return files[candidate]
        return None

    @property
    def loras(self) -> list[NetworkFile]:
        return self._list(LORA_DIR)

    @property
    def embeddings(self) -> list[NetworkFile]:
        return self._list(EMBEDDINGS_DIR)

    @property
    def vaes(self) -> list[NetworkFile]:
        return self._list(VAE_DIR)

    @property
    def controlnets(self) -> list[NetworkFile]:
        return self._list(CONTROLNET_DIR)

    @property
    def motion_modules(self) -> list[NetworkFile]:
        return self._list(MOTION_DIR)

    def short_hash(self, file: NetworkFile) -> str:
        """A1111's short hash of a network file: the first 12 hex digits of the sha256 of the tensor data
        (the "addnet" hash of a safetensors file, without its header). Cached per file and mtime."""
        key = (str(file.path), file.path.stat().st_mtime)
        with self._lock:
            known = self._hashes.get(key)
        if known is None:
            known = tensor_data_sha256(file.path)[:12]
            with self._lock:
                self._hashes[key] = known
        return known

    def find_lora(self, name: str) -> NetworkFile | None:
        return self._find(LORA_DIR, name)

    def find_vae(self, name: str) -> NetworkFile | None:
        return self._find(VAE_DIR, name)

    def find_controlnet(self, name: str) -> NetworkFile | None:
        return self._find(CONTROLNET_DIR, name)

    def find_motion_module(self, name: str) -> NetworkFile | None:
        return self._find(MOTION_DIR, name)

    def describe_loras(self) -> list[dict[str, Any]]:
        """``GET /sdapi/v1/loras`` as A1111's Lora extension answers it."""
        return [
            {
                "name": f.name,
                "alias": f.metadata.get("ss_output_name", f.name),
                "path": str(f.path),
                "metadata": f.metadata,
            }
            for f in self.loras
        ]
