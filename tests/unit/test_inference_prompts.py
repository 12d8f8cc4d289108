"""A1111-style prompt encoding for SD 1.x/2.x: same as diffusers for short prompts, chunked for long ones."""

from __future__ import annotations

import pytest
import torch

from inference_api.architectures import TINY_SD, TINY_SDXL
from inference_api.builder import build_pipeline
from inference_api.prompts import CHUNK, encode, needs_own_encoding, supports_own_encoding, token_count


@pytest.fixture(scope="module")
def pipe() -> object:
    torch.set_num_threads(1)
    return build_pipeline(TINY_SD, seed=4)


def test_short_prompt_matches_diffusers_own_encoding(pipe: object) -> None:
    ours = encode(pipe, ["a photo of a cat"], ["blurry"], clip_skip=1)
    theirs, negative = pipe.encode_prompt(  # type: ignore[attr-defined]
        "a photo of a cat", "cpu", 1, True, negative_prompt="blurry"
    )
    assert ours.chunks == 1
    assert torch.allclose(ours.prompt_embeds, theirs, atol=1e-6)
    assert torch.allclose(ours.negative_prompt_embeds, negative, atol=1e-6)


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm(pipe: object) -> None:
    encoder = pipe.text_encoder  # type: ignore[attr-defined]
    ours = encode(pipe, ["a cat"], [""], clip_skip=2)
    ids = pipe.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids  # type: ignore[attr-defined]
    expected = encoder.final_layer_norm(encoder(ids, output_hidden_states=True).hidden_states[-2])
    assert torch.allclose(ours.prompt_embeds, expected, atol=1e-6)
    assert not torch.allclose(ours.prompt_embeds, encode(pipe, ["a cat"], [""], clip_skip=1).prompt_embeds)


def test_long_prompts_are_chunked_and_the_batch_padded_to_the_longest(pipe: object) -> None:
    long = " ".join(["cat"] * 100)
    tokenizer = pipe.tokenizer  # type: ignore[attr-defined]
    assert token_count(tokenizer, long) == 100 and needs_own_encoding(tokenizer, [long], 1)
    assert not needs_own_encoding(tokenizer, ["a cat"], 1) and needs_own_encoding(tokenizer, ["a cat"], 2)
    out = encode(pipe, [long, "a dog"], ["", ""], clip_skip=1)
    assert out.chunks == 2 and out.prompt_embeds.shape == (2, 2 * (CHUNK + 2), 32)
    # The first chunk of a short prompt is its ordinary encoding; the padding chunk is an empty prompt's.
    short = encode(pipe, ["a dog"], [""], clip_skip=1).prompt_embeds
    assert torch.allclose(out.prompt_embeds[1:, : CHUNK + 2], short, atol=1e-6)


def test_only_single_encoder_pipelines_use_it(pipe: object) -> None:
    accepted = {"prompt_embeds", "negative_prompt_embeds"}
    assert supports_own_encoding(pipe, accepted)
    assert not supports_own_encoding(pipe, {"prompt_embeds"})
    assert not supports_own_encoding(build_pipeline(TINY_SDXL), accepted)
