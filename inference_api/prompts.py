"""Prompt encoding for the SD 1.x/2.x family, as AUTOMATIC1111 does it: prompts longer than CLIP's 75 tokens
are encoded in 75-token chunks whose embeddings are concatenated, and "Clip skip" picks an earlier layer.

diffusers truncates long prompts, and its own ``clip_skip`` path reaches for ``text_encoder.text_model``,
which transformers 5 no longer has; encoding here (and handing ``prompt_embeds`` to the pipeline) fixes
both. Used only when needed, so ordinary prompts take diffusers' path unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

CHUNK = 75  # CLIP's 77 positions minus the start and end tokens


@dataclass
class Encoded:
    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    chunks: int


def supports_own_encoding(pipe: Any, accepted: set[str]) -> bool:
    """One CLIP text encoder (not SDXL's two) and a pipeline that takes precomputed embeddings."""
    return (
        getattr(pipe, "text_encoder", None) is not None
        and getattr(pipe, "tokenizer", None) is not None
        and getattr(pipe, "text_encoder_2", None) is None
        and {"prompt_embeds", "negative_prompt_embeds"} <= accepted
    )


def token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


def needs_own_encoding(tokenizer: Any, texts: list[str], clip_skip: int) -> bool:
    return clip_skip > 1 or any(token_count(tokenizer, t) > CHUNK for t in texts)


def encode(pipe: Any, prompts: list[str], negatives: list[str], clip_skip: int) -> Encoded:
    """Embeddings of shape (batch, chunks * 77, width); every text padded to the batch's chunk count."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    texts = [*prompts, *negatives]
    ids = [tokenizer(t, add_special_tokens=False, truncation=False).input_ids for t in texts]
    chunks = max(1, *(math.ceil(len(seq) / CHUNK) for seq in ids))
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = []
    for seq in ids:
        for c in range(chunks):
            part = seq[c * CHUNK : (c + 1) * CHUNK]
            rows.append([bos, *part, eos] + [pad] * (CHUNK - len(part)))
    device = encoder.device
    input_ids = torch.tensor(rows, device=device)
    with torch.inference_mode():
        if clip_skip > 1:
            hidden = encoder(input_ids, output_hidden_states=True).hidden_states[-clip_skip]
            # The last layer's output goes through the final norm; an earlier one must too (as in A1111).
            final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
            hidden = final_norm(hidden)
        else:
            hidden = encoder(input_ids)[0]
    hidden = hidden.reshape(len(texts), chunks * (CHUNK + 2), -1)
    return Encoded(hidden[: len(prompts)], hidden[len(prompts) :], chunks)
