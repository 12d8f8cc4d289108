"""A CLIP tokenizer built offline: byte-level BPE vocabulary and merges written by us, no hub download.

The real CLIP vocabulary has 49k learned merges; tests only need the same classes and file formats, so
the vocabulary is the 256 byte symbols (plus their end-of-word forms) and merges for a few common words.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tokenizers import pre_tokenizers

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
MAX_LENGTH = 77

# Words whose merges we add, so that ordinary prompts are not all single bytes.
COMMON_WORDS = (
    "a photo of the cat dog wizard portrait landscape painting detailed fantasy cute city night "
    "mountain river forest sky sun blue red green light dark art style high quality beautiful"
).split()


def byte_alphabet() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for raw bytes, in a stable order."""
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def build_vocab_and_merges(words: tuple[str, ...] | list[str] = COMMON_WORDS) -> tuple[dict[str, int], list[str]]:
    symbols = byte_alphabet()
    tokens = symbols + [s + END_OF_WORD for s in symbols]
    merges: list[str] = []
    for word in words:
        # Left-to-right merges: "cat" -> (c a) then (ca t</w>); each product becomes a vocabulary entry.
        pieces = [*word[:-1], word[-1] + END_OF_WORD]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            current = current + piece
            if merge not in merges:
                merges.append(merge)
                tokens.append(current)
    vocab: dict[str, int] = {}
    for token in [*tokens, BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def build_tokenizer() -> Any:
    """A ``transformers.CLIPTokenizer`` over our vocabulary, padded/truncated to CLIP's 77 tokens."""
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges()
    pairs: Any = [tuple(m.split(" ")) for m in merges]  # the tokenizers backend wants (left, right) pairs
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=MAX_LENGTH)


def write_tokenizer(folder: Any) -> None:
    """Save the tokenizer (tokenizer.json + config) plus the classic vocab.json / merges.txt pair."""
    import json

    path = Path(folder)
    build_tokenizer().save_pretrained(path)
    vocab, merges = build_vocab_and_merges()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


# The real CLIP vocabulary (SD 1.x, SD 2.x, SDXL: every text encoder uses it) is read from the BPE file that
# OpenAI's CLIP tokenizer ships and that these PyPI packages carry; never downloaded at run time.
CLIP_BPE_SOURCES = (
    ("clip-anytorch", "clip/bpe_simple_vocab_16e6.txt.gz"),
    ("open-clip-torch", "open_clip/bpe_simple_vocab_16e6.txt.gz"),
)
CLIP_MERGES = 49152 - 256 - 2  # how many merge lines CLIP's own tokenizer reads: a 49408-token vocabulary
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_MERGES + 2
OPEN_CLIP_PAD = "!"  # SD 2.x and SDXL's second tokenizer pad with token 0, as OpenCLIP does


class MissingVocabulary(RuntimeError):
    pass


def clip_bpe_file() -> Path:
    """The packaged ``bpe_simple_vocab_16e6.txt.gz``, located without importing the package (no torchvision)."""
    from importlib import metadata

    for distribution, member in CLIP_BPE_SOURCES:
        try:
            path = Path(str(metadata.distribution(distribution).locate_file(member)))
        except metadata.PackageNotFoundError:
            continue
        if path.is_file():
            return path
    raise MissingVocabulary(
        "the CLIP BPE vocabulary is missing: install clip-anytorch (pip install --no-deps -c constraints.txt "
        "clip-anytorch), which ships bpe_simple_vocab_16e6.txt.gz"
    )


def bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2's printable stand-ins for the 256 byte values, in the order that fixes their token ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


@functools.cache
def clip_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's 49408-token vocabulary and its merges, exactly as ``openai/clip-vit-large-patch14`` lists them."""
    import gzip

    with gzip.open(clip_bpe_file(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = tuple(lines[1 : CLIP_MERGES + 1])  # the first line is a version header
    symbols = bytes_to_unicode()
    tokens = [*symbols, *(s + END_OF_WORD for s in symbols), *(m.replace(" ", "") for m in merges), BOS, EOS]
    vocab: dict[str, int] = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"unexpected CLIP vocabulary size {len(vocab)}")
    return vocab, merges


def build_clip_tokenizer(pad_token: str = EOS) -> Any:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    pairs: Any = [tuple(m.split(" ")) for m in merges]
    return CLIPTokenizer(vocab=dict(vocab), merges=pairs, model_max_length=MAX_LENGTH, pad_token=pad_token)


def write_clip_tokenizer(folder: Any, pad_token: str = EOS) -> None:
    import json

    path = Path(folder)
    build_clip_tokenizer(pad_token).save_pretrained(path)
    vocab, merges = clip_vocab_and_merges()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
