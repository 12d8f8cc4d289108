"""The tiny model: deterministic, offline tokenizer files, real classes, quick to run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from inference_api.tiny import build_tiny_model
from inference_api.tokenizer import BOS, EOS, MAX_LENGTH, build_tokenizer, build_vocab_and_merges
from tests.runtime_helpers import ROOT


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.safetensors"))
    }


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a = _digest(build_tiny_model(tmp_path / "a", name="m", seed=5))
    b = _digest(build_tiny_model(tmp_path / "b", name="m", seed=5))
    c = _digest(build_tiny_model(tmp_path / "c", name="m", seed=6))
    assert a == b and set(a) == {
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    }
    assert a != c


def test_folder_has_real_classes_and_classic_tokenizer_files(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path, name="m")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["tokenizer"] == [
        "transformers",
        "CLIPTokenizer",
    ]
    vocab = json.loads((folder / "tokenizer" / "vocab.json").read_text())
    merges = (folder / "tokenizer" / "merges.txt").read_text().splitlines()
    assert merges[0].startswith("#version") and vocab[BOS] == len(vocab) - 2 and vocab[EOS] == len(vocab) - 1
    from transformers import CLIPTextConfig, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert tokenizer.model_max_length == MAX_LENGTH
    encoder = CLIPTextConfig.from_pretrained(folder / "text_encoder")
    assert encoder.vocab_size == len(tokenizer) and encoder.eos_token_id == tokenizer.eos_token_id


def test_tokenizer_merges_common_words_and_never_needs_the_hub() -> None:
    tokenizer = build_tokenizer()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A photo of a CAT, 8k!").input_ids)
    assert tokens[:6] == [BOS, "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"] and tokens[-1] == EOS
    vocab, merges = build_vocab_and_merges(["ab"])
    assert merges == ["a b</w>"] and "ab</w>" in vocab


def test_generates_a_64px_image_in_few_steps() -> None:
    from inference_api.architectures import TINY_SD
    from inference_api.builder import build_pipeline

    torch.set_num_threads(1)
    pipe = build_pipeline(TINY_SD)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a cat", num_inference_steps=4, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)  # the UNet's sample size times the VAE's 8x: SD's real downsampling


def test_cli_writes_an_sdxl_single_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference_api", "build-tiny-model", str(tmp_path), "--xl", "--single-file"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path == tmp_path / "tiny-sdxl-single.safetensors" and path.is_file()
    index = json.loads((tmp_path / "configs" / "tiny-sdxl-single" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert not list((tmp_path / "configs").rglob("*.safetensors"))  # configs only, no weights


def test_no_configs_writes_the_checkpoint_alone(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path, single_file=True, no_configs=True, name="alone")
    assert [p.name for p in tmp_path.iterdir()] == ["alone.safetensors"] and path == tmp_path / "alone.safetensors"
    from inference_api.checkpoints import read_header

    shapes = read_header(path).shapes
    assert shapes["betas"] == (1000,) and shapes["alphas_cumprod"] == (1000,)  # as released files carry them


def test_no_configs_needs_a_single_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference_api", "build-tiny-model", str(tmp_path), "--no-configs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and "--no-configs needs --single-file" in result.stderr
    assert not list(tmp_path.iterdir())
