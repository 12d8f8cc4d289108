"""Textual-inversion embeddings from ``<models>/embeddings/``, triggered by their name in a prompt (A1111).

A file ``NAME.safetensors`` holds ``emb_params`` (SD 1.x/2.x: ``[vectors, width]``, A1111's own training
output) or ``clip_l`` + ``clip_g`` (SDXL). Where the tokenized prompt spells NAME, those vectors replace the
token embeddings (see :mod:`inference_api.prompt_weights`); an embedding whose width does not fit the model's
text encoder is skipped for that model, as A1111 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_api.networks import NetworkFile
from inference_api.prompt_weights import EmbeddingLookup

SD_KEY = "emb_params"
XL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class Embedding:
    name: str
    vectors: tuple[torch.Tensor, ...]  # one per text encoder it was made for (SD: one; SDXL: CLIP-L, bigG)


def read(file: NetworkFile) -> Embedding | None:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(file.path))
    except (OSError, ValueError, RuntimeError):
        return None
    if all(k in tensors for k in XL_KEYS):
        return Embedding(file.name, tuple(tensors[k].float() for k in XL_KEYS))
    if SD_KEY in tensors:
        return Embedding(file.name, (tensors[SD_KEY].float(),))
    return None


def mentioned(files: Sequence[NetworkFile], texts: Sequence[str]) -> tuple[NetworkFile, ...]:
    """The embedding files whose names appear in ``texts`` (CLIP lowercases, so case does not matter)."""
    joined = " ".join(texts).lower()
    return tuple(f for f in files if f.name.lower() in joined)


def lookups(pipe: Any, files: Sequence[NetworkFile]) -> tuple[list[EmbeddingLookup | None], list[str]]:
    """One lookup per text encoder of ``pipe`` (for ``prompt_weights.encoder_specs``), and skip notes."""
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    tables: list[dict[int, list[tuple[tuple[int, ...], torch.Tensor]]]] = [{} for _ in encoders]
    notes: list[str] = []
    for file in files:
        embedding = read(file)
        if embedding is None or len(embedding.vectors) != len(encoders):
            notes.append(f"embedding {file.name} does not fit this model; skipped")
            continue
        widths = [int(encoder.get_input_embeddings().weight.shape[1]) for _, encoder in encoders]
        if [int(v.shape[-1]) for v in embedding.vectors] != widths:
            notes.append(f"embedding {file.name} does not fit this model; skipped")
            continue
        for table, (tokenizer, _), vectors in zip(tables, encoders, embedding.vectors, strict=True):
            ids = tuple(tokenizer(file.name, add_special_tokens=False).input_ids)
            if ids:
                table.setdefault(ids[0], []).append((ids, vectors.reshape(-1, vectors.shape[-1])))
    for table in tables:
        for candidates in table.values():
            candidates.sort(key=lambda c: -len(c[0]))  # the longest name wins, as in A1111
    return [_lookup(table) if table else None for table in tables], notes


def _lookup(table: dict[int, list[tuple[tuple[int, ...], torch.Tensor]]]) -> EmbeddingLookup:
    def find(ids: Sequence[int], position: int) -> tuple[torch.Tensor, int] | None:
        for trigger, vectors in table.get(ids[position], ()):
            if tuple(ids[position : position + len(trigger)]) == trigger:
                return vectors, len(trigger)
        return None

    return find


def describe(files: Sequence[NetworkFile]) -> dict[str, Any]:
    """``GET /sdapi/v1/embeddings`` in A1111's shape."""
    loaded: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for file in files:
        embedding = read(file)
        if embedding is None:
            skipped[file.name] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None}
            continue
        first = embedding.vectors[0]
        loaded[file.name] = {
            "step": None,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
            "shape": int(first.shape[-1]),
            "vectors": int(first.reshape(-1, first.shape[-1]).shape[0]),
        }
    return {"loaded": loaded, "skipped": skipped}


def build_tiny_embedding(model_dir: Path, out: Path, *, vectors: int = 2, seed: int = 0) -> Path:
    """A random embedding for a (tiny) diffusers model folder, sized to its text encoder(s)."""
    import json

    from safetensors.torch import save_file

    index = json.loads((model_dir / "model_index.json").read_text())
    generator = torch.Generator().manual_seed(seed)
    widths = []
    for sub in ("text_encoder", "text_encoder_2"):
        if isinstance(index.get(sub), list) and index[sub][0] is not None:
            config = json.loads((model_dir / sub / "config.json").read_text())
            widths.append(int(config["hidden_size"]))
    tensors = [torch.randn((vectors, w), generator=generator) for w in widths]
    data = dict(zip(XL_KEYS, tensors, strict=True)) if len(tensors) == 2 else {SD_KEY: tensors[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, str(out))
    return out
