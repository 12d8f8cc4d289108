"""AUTOMATIC1111's prompt syntax and text conditioning, for SD 1.x/2.x (one CLIP) and SDXL (CLIP-L + bigG).

What A1111 users write and what it does there:

- ``(x)`` multiplies the attention of ``x`` by 1.1 per level, ``[x]`` divides it by 1.1, ``(x:W)`` sets W;
  ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets; unbalanced brackets apply to the rest of the prompt.
- ``BREAK`` ends the current 75-token chunk (the rest is padded).
- Prompts longer than 75 tokens are encoded in 75-token chunks, each framed by start/end tokens, and the
  hidden states concatenated (a chunk that would split a phrase backs up to a comma within 20 tokens).
- Token embeddings are multiplied by their weights, then each chunk is rescaled so its mean is what it was
  before weighting ("Original" emphasis). With every weight 1.0 nothing changes, so ``(x:1.0)`` == ``x``.
- SDXL: both encoders see the same chunks (penultimate layer, no final norm); their hidden states are
  concatenated per token; the pooled embedding comes from bigG's first chunk. "Clip skip" applies to CLIP-L
  only, and only when the ``sdxl_clip_l_skip`` option is on. An empty negative prompt is all zeros.
- SD 1.x: "Clip skip" N takes the N-th layer from the end through the final layer norm.

Everything here is per text (an image does not depend on its batch companions, except for the chunk count a
longer companion imposes, padded with empty chunks as A1111's ``pad_cond_uncond`` does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

CHUNK = 75  # CLIP's 77 positions minus the start and end tokens
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
ROUND = 1.1
SQUARE = 1 / 1.1
BREAK = "BREAK"
_BREAK_WEIGHT = -1.0  # marks a BREAK fragment, as A1111 does

_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]          # escaped bracket or backslash
  | \\                    # lone backslash
  | \(                    # open round
  | \[                    # open square
  | :\s*([+-]?[.\d]+)\s*\)  # explicit weight closing a round bracket
  | \)                    # close round
  | ]                     # close square
  | [^\\()\[\]:]+         # plain text
  | :                     # a colon that is not a weight
""",
    re.VERBOSE,
)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """``text`` as (fragment, weight) pairs, adjacent equal weights merged; ``BREAK`` as ``("BREAK", -1)``.

    >>> parse_attention("a (b:1.5) [c]")
    [('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 0.9090909090909091)]
    """
    fragments: list[list[Any]] = []  # [text, weight] pairs, mutable while brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            fragment[1] *= factor

    for match in _TOKEN.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            if piece[1:]:
                fragments.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(fragments))
        elif piece == "[":
            square_open.append(len(fragments))
        elif weight is not None and round_open:
            try:
                scale(round_open.pop(), float(weight))
            except ValueError:  # "(x:1.2.3)": not a number, kept as text as A1111 does
                fragments.append([piece, 1.0])
        elif piece == ")" and round_open:
            scale(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            scale(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK_SPLIT.split(piece)):
                if i > 0:
                    fragments.append([BREAK, _BREAK_WEIGHT])
                if part:
                    fragments.append([part, 1.0])
    for start in round_open:
        scale(start, ROUND)
    for start in square_open:
        scale(start, SQUARE)
    merged: list[list[Any]] = []
    for fragment in fragments:
        if merged and merged[-1][1] == fragment[1] and fragment[1] != _BREAK_WEIGHT:
            merged[-1][0] += fragment[0]
        else:
            merged.append(fragment)
    return [(str(t), float(w)) for t, w in merged] or [("", 1.0)]


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


# An embedding lookup: given the token ids and a position, the vectors of a textual-inversion embedding whose
# trigger starts there and the number of ids its trigger spans, or None.
EmbeddingLookup = Callable[[Sequence[int], int], "tuple[torch.Tensor, int] | None"]


@dataclass
class Tokenized:
    chunks: list[Chunk]
    count: int = 0  # tokens as A1111 counts them: 75 per full chunk plus the last chunk's own
    # (chunk index, offset in the chunk, vectors): textual-inversion vectors replacing token embeddings
    embeddings: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)


def tokenize(tokenizer: Any, text: str, lookup: EmbeddingLookup | None = None) -> Tokenized:
    """Weighted 75-token chunks of ``text`` (without start/end framing), as A1111's ``tokenize_line``."""
    parsed = parse_attention(text)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    pad = _pad_id(tokenizer)
    result = Tokenized([])
    chunk = Chunk()
    last_comma = -1

    def next_chunk(last: bool = False) -> None:
        nonlocal chunk, last_comma
        result.count += len(chunk.tokens) if last else CHUNK
        missing = CHUNK - len(chunk.tokens)
        chunk.tokens += [pad] * missing
        chunk.weights += [1.0] * missing
        result.chunks.append(chunk)
        chunk, last_comma = Chunk(), -1

    for fragment, weight in parsed:
        if weight == _BREAK_WEIGHT and fragment == BREAK:
            next_chunk()
            continue
        ids = tokenizer(fragment, add_special_tokens=False, truncation=False).input_ids
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                # Move the words after the last comma into the next chunk rather than cut a phrase.
                moved = Chunk(chunk.tokens[last_comma + 1 :], chunk.weights[last_comma + 1 :])
                del chunk.tokens[last_comma + 1 :], chunk.weights[last_comma + 1 :]
                _move_embeddings(result, len(result.chunks), last_comma + 1)
                next_chunk()
                chunk = moved
            if len(chunk.tokens) == CHUNK:
                next_chunk()
            found = lookup(ids, position) if lookup is not None else None
            if found is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                position += 1
                continue
            vectors, span = found
            if len(chunk.tokens) + len(vectors) > CHUNK:  # an embedding never straddles two chunks
                next_chunk()
            result.embeddings.append((len(result.chunks), len(chunk.tokens), vectors))
            chunk.tokens += [pad] * len(vectors)  # placeholders; their embeddings are replaced
            chunk.weights += [weight] * len(vectors)
            position += span
    if chunk.tokens or not result.chunks:
        next_chunk(last=True)
    return result


def _move_embeddings(result: Tokenized, chunk_index: int, offset: int) -> None:
    """Embeddings placed in ``chunk_index`` at or after ``offset`` move to the start of the next chunk."""
    result.embeddings = [
        (c + 1, o - offset, v) if c == chunk_index and o >= offset else (c, o, v) for c, o, v in result.embeddings
    ]


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def token_count(tokenizer: Any, text: str) -> int:
    return tokenize(tokenizer, text).count


# -- encoding -------------------------------------------------------------------------------------------


@dataclass
class Conditioning:
    """Per-text hidden states (texts, chunks * 77, width) and, for SDXL, pooled embeddings (texts, width)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None
    chunks: int


@dataclass(frozen=True)
class EncoderSpec:
    """How one text encoder is read: which hidden layer, through the final norm or not."""

    tokenizer: Any
    encoder: Any
    layer_from_end: int  # 1: the last layer
    final_norm: bool
    pooled: bool = False  # take the projected pooled output (SDXL's bigG)
    lookup: EmbeddingLookup | None = None


def is_xl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None and getattr(pipe, "tokenizer_2", None) is not None


def supports(pipe: Any, accepted: set[str]) -> bool:
    """Whether this runtime conditions the pipeline itself: a CLIP family pipeline taking precomputed embeddings."""
    if getattr(pipe, "tokenizer", None) is None or getattr(pipe, "text_encoder", None) is None:
        return False
    needed = {"prompt_embeds", "negative_prompt_embeds"}
    if is_xl(pipe):
        needed |= {"pooled_prompt_embeds", "negative_pooled_prompt_embeds"}
    elif getattr(pipe, "text_encoder_2", None) is not None:
        return False
    return needed <= accepted


def encoder_specs(
    pipe: Any, clip_skip: int, sdxl_clip_l_skip: bool = False, lookups: Sequence[EmbeddingLookup | None] = ()
) -> list[EncoderSpec]:
    lookup = [*lookups, None, None]
    if not is_xl(pipe):
        return [EncoderSpec(pipe.tokenizer, pipe.text_encoder, max(1, clip_skip), True, lookup=lookup[0])]
    clip_l_layer = max(1, clip_skip) if sdxl_clip_l_skip else 2
    return [
        EncoderSpec(pipe.tokenizer, pipe.text_encoder, clip_l_layer, False, lookup=lookup[0]),
        EncoderSpec(pipe.tokenizer_2, pipe.text_encoder_2, 2, False, pooled=True, lookup=lookup[1]),
    ]


def condition(specs: Sequence[EncoderSpec], texts: Sequence[str], zero_empty: Sequence[bool] = ()) -> Conditioning:
    """Encode ``texts`` with every encoder in ``specs``; hidden states concatenated along the feature axis.

    ``zero_empty[i]`` makes text *i* all zeros when it is empty (SDXL's empty negative prompt).
    """
    per_encoder = [[tokenize(spec.tokenizer, t, spec.lookup) for t in texts] for spec in specs]
    chunks = max(len(tok.chunks) for tokens in per_encoder for tok in tokens)
    hidden_parts, pooled = [], None
    for spec, tokens in zip(specs, per_encoder, strict=True):
        hidden, pool = _encode(spec, tokens, chunks)
        hidden_parts.append(hidden)
        if spec.pooled:
            pooled = pool
    hidden = torch.cat(hidden_parts, dim=-1)
    zero = [i for i, text in enumerate(texts) if i < len(zero_empty) and zero_empty[i] and text == ""]
    if zero:
        keep = torch.ones(len(texts), device=hidden.device, dtype=hidden.dtype)
        keep[zero] = 0
        hidden = hidden * keep[:, None, None]
        if pooled is not None:
            pooled = pooled * keep[:, None]
    return Conditioning(hidden, pooled, chunks)


def _encode(spec: EncoderSpec, tokens: list[Tokenized], chunks: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    tokenizer, encoder = spec.tokenizer, spec.encoder
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, _pad_id(tokenizer)
    rows, weights = [], []
    for tok in tokens:
        padded = tok.chunks + [Chunk([pad] * CHUNK, [1.0] * CHUNK)] * (chunks - len(tok.chunks))
        for chunk in padded:
            rows.append([bos, *chunk.tokens, eos])
            weights.append([1.0, *chunk.weights, 1.0])
    device = encoder.device
    input_ids = torch.tensor(rows, device=device)
    with torch.inference_mode():
        inputs_embeds = _token_embeddings(encoder, input_ids, tokens, chunks)
        kwargs: dict[str, Any] = {"output_hidden_states": True}
        if inputs_embeds is None:
            out = encoder(input_ids, **kwargs)
        else:
            out = _forward_with_embeds(encoder, input_ids, inputs_embeds)
        hidden = out.hidden_states[-spec.layer_from_end]
        if spec.final_norm:
            hidden = getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
        pooled = out[0] if spec.pooled else None
        multipliers = torch.tensor(weights, device=device, dtype=hidden.dtype).unsqueeze(-1)
        # "Original" emphasis: weight each token, then restore every chunk's mean.
        # Chunks without weights are left untouched (exactly: no 0/0 when a mean happens to be zero).
        plain = (multipliers == 1).all(dim=1, keepdim=True)
        before = hidden.mean(dim=(1, 2), keepdim=True)
        weighted = hidden * multipliers
        after = weighted.mean(dim=(1, 2), keepdim=True)
        hidden = torch.where(plain, hidden, weighted * (before / after))
    width = hidden.shape[-1]
    hidden = hidden.reshape(len(tokens), chunks * (CHUNK + 2), width)
    if pooled is not None:
        pooled = pooled.reshape(len(tokens), chunks, -1)[:, 0]  # A1111: from the first chunk
    return hidden, pooled


def _token_embeddings(
    encoder: Any, input_ids: torch.Tensor, tokens: list[Tokenized], chunks: int
) -> torch.Tensor | None:
    placements = [(t * chunks + c, o, v) for t, tok in enumerate(tokens) for c, o, v in tok.embeddings]
    if not placements:
        return None
    table = encoder.get_input_embeddings()
    embeds = table(input_ids).clone()
    for row, offset, vectors in placements:
        start = 1 + offset  # after the start token
        embeds[row, start : start + len(vectors)] = vectors.to(embeds.device, embeds.dtype)
    return embeds


def _forward_with_embeds(encoder: Any, input_ids: torch.Tensor, inputs_embeds: torch.Tensor) -> Any:
    """Run a CLIP text model on replaced token embeddings while it still pools at the end token of ``input_ids``."""
    table = encoder.get_input_embeddings()

    def swap(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor:
        return inputs_embeds

    handle = table.register_forward_hook(swap)
    try:
        return encoder(input_ids, output_hidden_states=True)
    finally:
        handle.remove()


def chunks_needed(tokenizer: Any, text: str) -> int:
    """The 75-token chunks ``text`` encodes to (``BREAK`` and comma back-tracking included)."""
    return len(tokenize(tokenizer, text).chunks)
