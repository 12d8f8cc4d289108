"""The configs shipped for single files: the published architectures, the real CLIP vocabulary, the
prediction type a file declares. Structural checks on the meta device (no weights are allocated)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from inference_api.architectures import PUBLISHED, SD2, SD2_V, Architecture
from inference_api.checkpoints import CheckpointHeader, classify_checkpoint, declared_prediction
from inference_api.ldm import pipeline_to_ldm
from inference_api.single_file import UnrecognisedCheckpoint, published_architecture, write_config_folder
from inference_api.tokenizer import CLIP_VOCAB_SIZE, EOS, build_clip_tokenizer

# Parameter counts of the released checkpoints' modules (UNet, then each text encoder).
RELEASED = {
    "v1": (859_520_964, [123_060_480]),  # SD 1.5; CLIP ViT-L/14
    "v2": (865_910_724, [340_387_840]),  # SD 2.1; OpenCLIP ViT-H/14 without its last layer
    "xl_base": (2_567_463_684, [123_060_480, 694_659_840]),  # SDXL 1.0; + OpenCLIP ViT-bigG/14
    "xl_refiner": (2_259_526_660, [694_659_840]),
    "inpainting": (859_520_964 + 5 * 320 * 9, [123_060_480]),  # five more input channels
    "inpainting_v2": (865_910_724 + 5 * 320 * 9, [340_387_840]),
    "xl_inpaint": (2_567_463_684 + 5 * 320 * 9, [123_060_480, 694_659_840]),
}
SD_VAE = 83_653_863


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_pipeline(folder: Path) -> dict[str, torch.nn.Module]:
    """The modules a config folder describes, built from its JSON files alone on the meta device."""
    import diffusers
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    modules = {}
    with torch.device("meta"):
        for name, spec in index.items():
            if not isinstance(spec, list) or spec[0] is None or name.startswith(("tokenizer", "scheduler")):
                continue
            library, class_name = spec
            cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
            if library == "diffusers":
                modules[name] = cls.from_config(cls.load_config(folder / name))
            else:
                modules[name] = cls(transformers.AutoConfig.from_pretrained(folder / name))
    return modules


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_shipped_configs_have_the_released_parameter_counts(family: str, tmp_path: Path) -> None:
    folder = write_config_folder(PUBLISHED[family], tmp_path / family)
    modules = _meta_pipeline(folder)
    unet, texts = RELEASED[family]
    assert _count(modules["unet"]) == unet
    assert _count(modules["vae"]) == SD_VAE
    assert [_count(modules[k]) for k in ("text_encoder", "text_encoder_2") if k in modules] == texts
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == PUBLISHED[family].pipeline_class
    assert not [p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin"}]


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_the_published_layout_converts_exactly_into_the_shipped_configs(family: str, tmp_path: Path) -> None:
    """The original-layout tensors of each family (names and shapes, written by inference_api.ldm from modules
    built on the meta device) are classified as that family and convert, through diffusers' own single-file
    converters and the shipped configs, into exactly the modules' tensors."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    arch = PUBLISHED[family]
    modules = _meta_pipeline(write_config_folder(arch, tmp_path / family))
    layout = SimpleNamespace(**{name: modules.get(name) for name in ("unet", "vae", "text_encoder", "text_encoder_2")})
    original = pipeline_to_ldm(layout, open_clip_text=arch.open_clip_text)
    assert classify_checkpoint(CheckpointHeader({k: tuple(v.shape) for k, v in original.items()})) == family

    def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in state.items()}

    unet, vae = modules["unet"], modules["vae"]
    assert shapes(convert_ldm_unet_checkpoint(original, dict(unet.config))) == shapes(unet.state_dict())
    assert shapes(convert_ldm_vae_checkpoint(original, dict(vae.config))) == shapes(vae.state_dict())


def test_the_clip_vocabulary_is_the_real_one_from_the_installed_package(tmp_path: Path) -> None:
    tokenizer = build_clip_tokenizer()
    assert len(tokenizer) == CLIP_VOCAB_SIZE == 49408
    # Token ids of openai/clip-vit-large-patch14, as every SD text encoder was trained with them.
    assert tokenizer("a photo of a CAT").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.pad_token == EOS and build_clip_tokenizer("!").pad_token_id == 0
    write_config_folder(SD2, tmp_path)  # OpenCLIP pads with "!" (token 0)
    vocab = json.loads((tmp_path / "tokenizer" / "vocab.json").read_text())
    merges = (tmp_path / "tokenizer" / "merges.txt").read_text().splitlines()
    assert vocab["<|endoftext|>"] == 49407 and vocab["cat</w>"] == 2368 and len(merges) == 1 + 48894
    config = json.loads((tmp_path / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["pad_token"] == "!"


def _header(metadata: dict[str, str] | None = None, *, keys: tuple[str, ...] = (), step: int | None = None):
    shapes = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}
    shapes.update({"cond_stage_model.model.token_embedding.weight": (49408, 1024)})
    shapes.update({k: (0,) for k in keys})
    return CheckpointHeader(shapes, metadata or {}, step)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (_header({"modelspec.prediction_type": "v"}), "v_prediction"),
        (_header({"modelspec.prediction_type": "epsilon"}), "epsilon"),
        (_header({"ss_v_parameterization": "True"}), "v_prediction"),
        (_header(keys=("v_pred",)), "v_prediction"),
        (_header(step=875000), "epsilon"),
        (_header(step=110000), None),
        (_header(), None),
    ],
)
def test_declared_prediction(header: CheckpointHeader, expected: str | None) -> None:
    assert classify_checkpoint(header) == "v2"
    assert declared_prediction(header) == expected


@pytest.mark.parametrize(
    ("header", "arch"),
    [(_header(), SD2_V), (_header({"modelspec.prediction_type": "epsilon"}), SD2), (_header(step=875000), SD2)],
)
def test_sd2_kind_follows_the_declaration(header: CheckpointHeader, arch: Architecture) -> None:
    assert published_architecture("m.safetensors", "v2", header) == arch


def test_an_unknown_family_names_the_file_and_the_folder_to_add() -> None:
    with pytest.raises(UnrecognisedCheckpoint, match=r"^sd3\.safetensors: unrecognised .* add configs/sd3/"):
        published_architecture("sd3.safetensors", "unknown", _header())


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        (("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",), "unknown"),  # SD3
        (("model.diffusion_model.double_blocks.0.img_attn.qkv.weight",), "unknown"),  # Flux
        (("lora_unet_down_blocks_0_attentions_0_proj_in.alpha",), None),
        (("first_stage_model.decoder.conv_out.weight",), None),  # a VAE alone
    ],
)
def test_what_is_not_an_sd_checkpoint(keys: tuple[str, ...], family: str | None) -> None:
    assert classify_checkpoint(CheckpointHeader({k: (1,) for k in keys})) == family
