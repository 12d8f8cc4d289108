"""A CLIP tokenizer built offline: byte-level BPE vocabulary and merges written by us, no hub download.

The real CLIP vocabulary has 49k learned merges; tests only need the same classes and file formats, so
the vocabulary is the 256 byte symbols (plus their end-of-word forms) and merges for a few common words.
"""

from __future__ import annotations

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
    from pathlib import Path

    path = Path(folder)
    build_tokenizer().save_pretrained(path)
    vocab, merges = build_vocab_and_merges()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
