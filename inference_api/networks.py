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
_TAG = re.compile(r"<(\w+):([^>]+)>")
MAX_DEPTH = 3


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


def _scan(folder: Path) -> list[NetworkFile]:
    found: list[NetworkFile] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.safetensors")):
        if len(path.relative_to(folder).parts) > MAX_DEPTH:
            continue
        try:
            metadata = read_header(path).metadata
        except (OSError, ValueError):
            continue
        found.append(NetworkFile(path.stem, path, metadata))
    return found


class NetworkCatalog:
    """The LoRA and embedding files under the model directory; rescanned on ``refresh``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._loras: dict[str, NetworkFile] = {}
        self._embeddings: dict[str, NetworkFile] = {}

    def refresh(self) -> None:
        loras = {f.name.lower(): f for f in _scan(self.root / LORA_DIR)}
        embeddings = {f.name: f for f in _scan(self.root / EMBEDDINGS_DIR)}
        with self._lock:
            self._loras, self._embeddings = loras, embeddings

    @property
    def loras(self) -> list[NetworkFile]:
        with self._lock:
            return list(self._loras.values())

    @property
    def embeddings(self) -> list[NetworkFile]:
        with self._lock:
            return list(self._embeddings.values())

    def find_lora(self, name: str) -> NetworkFile | None:
        with self._lock:
            return self._loras.get(name.lower())

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
