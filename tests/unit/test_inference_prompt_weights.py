"""A1111's prompt syntax and conditioning on the tiny SD 1.x and SDXL text encoders."""

from __future__ import annotations

import pytest
import torch

from inference_api.architectures import TINY_SD, TINY_SDXL
from inference_api.builder import build_pipeline
from inference_api.prompt_weights import (
    CHUNK,
    chunks_needed,
    condition,
    encoder_specs,
    parse_attention,
    supports,
    token_count,
    tokenize,
)


@pytest.fixture(scope="module")
def sd() -> object:
    torch.set_num_threads(1)
    return build_pipeline(TINY_SD, seed=4)


@pytest.fixture(scope="module")
def xl() -> object:
    return build_pipeline(TINY_SDXL, seed=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("(a cat)", [("a cat", 1.1)]),
        ("((a cat))", [("a cat", 1.1 * 1.1)]),
        ("(a cat:1.5)", [("a cat", 1.5)]),
        ("(a cat:1.0)", [("a cat", 1.0)]),
        ("[a cat]", [("a cat", 1 / 1.1)]),
        ("a (b:1.5) [c]", [("a ", 1.0), ("b", 1.5), (" ", 1.0), ("c", 1 / 1.1)]),
        (r"\(a cat\)", [("(a cat)", 1.0)]),
        ("((a) b:2)", [("a", 2.2), (" b", 2.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("a:b", [("a:b", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_attention_syntax(text: str, expected: list[tuple[str, float]]) -> None:
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_chunks_break_and_comma_backtrack(sd: object) -> None:
    tokenizer = sd.tokenizer  # type: ignore[attr-defined]
    cat = tokenizer("cat", add_special_tokens=False).input_ids
    assert len(cat) == 1
    one = tokenize(tokenizer, "cat")
    assert len(one.chunks) == 1 and len(one.chunks[0].tokens) == CHUNK
    assert len(tokenize(tokenizer, " ".join(["cat"] * 100)).chunks) == 2
    broken = tokenize(tokenizer, "cat BREAK cat")
    assert len(broken.chunks) == 2 and broken.chunks[1].tokens[0] == cat[0]
    # 70 words, a comma, then 10 more: the chunk would split at 75, so the 5 words after the comma move on.
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    chunks = tokenize(tokenizer, text).chunks
    assert len(chunks) == 2
    assert chunks[1].tokens[:10] == tokenizer(" ".join(["dog"] * 10), add_special_tokens=False).input_ids
    weighted = tokenize(tokenizer, "(cat:1.5) dog")
    assert weighted.chunks[0].weights[:2] == [1.5, 1.0]
    assert token_count(tokenizer, "cat dog") == 2
    assert chunks_needed(tokenizer, "cat BREAK dog") == 2 and chunks_needed(tokenizer, "cat BREAK") == 1


def test_weight_one_is_the_plain_prompt_and_other_weights_are_not(sd: object) -> None:
    specs = encoder_specs(sd, clip_skip=1)
    plain = condition(specs, ["a photo of a cat"]).hidden
    assert torch.equal(condition(specs, ["a photo of a (cat:1.0)"]).hidden, plain)
    heavier = condition(specs, ["a photo of a (cat:1.5)"]).hidden
    assert not torch.allclose(heavier, plain)
    # The chunk mean is restored.
    assert torch.allclose(heavier.mean(), plain.mean(), atol=1e-6)


def test_plain_prompt_matches_diffusers(sd: object) -> None:
    ours = condition(encoder_specs(sd, clip_skip=1), ["a photo of a cat"]).hidden
    theirs, _ = sd.encode_prompt("a photo of a cat", "cpu", 1, False)  # type: ignore[attr-defined]
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_clip_skip_on_sd_uses_the_final_norm(sd: object) -> None:
    encoder = sd.text_encoder  # type: ignore[attr-defined]
    ours = condition(encoder_specs(sd, clip_skip=2), ["a cat"]).hidden
    ids = sd.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids  # type: ignore[attr-defined]
    expected = getattr(encoder, "text_model", encoder).final_layer_norm(
        encoder(ids, output_hidden_states=True).hidden_states[-2]
    )
    assert torch.allclose(ours, expected, atol=1e-6)


def test_sdxl_both_encoders_chunked_pooled_from_the_first_chunk(xl: object) -> None:
    assert supports(
        xl, {"prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"}
    )
    specs = encoder_specs(xl, clip_skip=1)
    short = condition(specs, ["a photo of a cat"])
    assert short.hidden.shape == (1, CHUNK + 2, 32 + 48) and short.pooled is not None
    theirs = xl.encode_prompt("a photo of a cat", device="cpu", do_classifier_free_guidance=False)  # type: ignore[attr-defined]
    assert torch.allclose(short.hidden, theirs[0], atol=1e-5)
    assert torch.allclose(short.pooled, theirs[2], atol=1e-5)
    head = " ".join(["cat"] * 75)
    longer = condition(specs, [head + " " + " ".join(["dog"] * 75)])
    assert longer.chunks == 2 and longer.hidden.shape[1] == 2 * (CHUNK + 2)
    alone = condition(specs, [head])
    assert torch.allclose(longer.pooled, alone.pooled, atol=1e-6)  # type: ignore[arg-type]
    assert not torch.allclose(longer.hidden[:, CHUNK + 2 :], alone.hidden, atol=1e-3)
    negative = condition(specs, [""], zero_empty=[True])
    assert not negative.hidden.any() and negative.pooled is not None and not negative.pooled.any()


def test_sdxl_clip_skip_touches_clip_l_only_and_only_when_asked(xl: object) -> None:
    base = condition(encoder_specs(xl, clip_skip=1), ["a cat"]).hidden
    assert torch.equal(condition(encoder_specs(xl, clip_skip=3), ["a cat"]).hidden, base)
    skipped = condition(encoder_specs(xl, clip_skip=1, sdxl_clip_l_skip=True), ["a cat"]).hidden
    assert not torch.allclose(skipped[..., :32], base[..., :32])
    assert torch.equal(skipped[..., 32:], base[..., 32:])
    # A1111's SDXL default reads CLIP-L's penultimate layer, which is clip skip 2 with the option on.
    assert torch.equal(condition(encoder_specs(xl, clip_skip=2, sdxl_clip_l_skip=True), ["a cat"]).hidden, base)
