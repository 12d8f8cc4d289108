"""Single-file checkpoints without anything beside them: the diffusers config folder their family needs.

``from_single_file`` converts an original-layout checkpoint into the diffusers modules described by a config
folder. The folder of each published family is written here from ``inference_api.architectures`` (plain
data shipped with the package) and the CLIP vocabulary of an installed package, so loading never reaches the
hub. SD 2.x comes in two kinds with identical tensors: the prediction type is read from what the file
declares (``checkpoints.declared_prediction``) and otherwise from how its UNet behaves (``predicts_v``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference_api.architectures import PUBLISHED, SD2, Architecture, TextEncoderSpec
from inference_api.catalog import CONFIGS_DIR
from inference_api.checkpoints import EPSILON, UNKNOWN, V_PREDICTION, CheckpointHeader, declared_prediction
from inference_api.tokenizer import BOS, CLIP_VOCAB_SIZE, EOS, write_clip_tokenizer, write_tokenizer

# Families whose released checkpoints differ only in what the UNet predicts (no tensor tells them apart).
AMBIGUOUS_PREDICTION = frozenset({"v2"})


class UnrecognisedCheckpoint(ValueError):
    """A single file whose architecture the runtime cannot tell: the message names the file and the fix."""


def how_to_configure(name: str) -> str:
    stem = Path(name).stem
    return (
        f"add {CONFIGS_DIR}/{stem}/ to the model directory: a diffusers config folder without weights "
        "(model_index.json and the unet/, vae/, text_encoder/, tokenizer/ and scheduler/ configs of its "
        "architecture), or convert it to a diffusers folder"
    )


def published_architecture(name: str, family: str, header: CheckpointHeader) -> Architecture:
    """The published architecture of a file's family (SD 2.x: the 512 base model when it declares epsilon)."""
    if family == UNKNOWN or family not in PUBLISHED:
        raise UnrecognisedCheckpoint(f"{name}: unrecognised checkpoint architecture; {how_to_configure(name)}")
    declared = declared_prediction(header)
    if family == "v2" and declared == EPSILON:
        return SD2
    return PUBLISHED[family]


def text_encoder_config(spec: TextEncoderSpec) -> Any:
    from transformers import CLIPTextConfig

    if spec.vocabulary == "clip":
        vocab_size, eos, bos = CLIP_VOCAB_SIZE, CLIP_VOCAB_SIZE - 1, CLIP_VOCAB_SIZE - 2
    else:
        from inference_api.tokenizer import build_tokenizer

        tokenizer = build_tokenizer()
        vocab_size, eos, bos = (
            len(tokenizer),
            tokenizer.convert_tokens_to_ids(EOS),
            tokenizer.convert_tokens_to_ids(BOS),
        )
    config = CLIPTextConfig(**spec.config(vocab_size, eos, bos))
    config.architectures = ["CLIPTextModelWithProjection" if spec.with_projection else "CLIPTextModel"]
    return config


def write_config_folder(arch: Architecture, folder: Path) -> Path:
    """The weightless diffusers folder of ``arch``: what ``from_single_file(config=...)`` reads."""
    import diffusers

    folder.mkdir(parents=True, exist_ok=True)
    version = diffusers.__version__
    index: dict[str, Any] = {"_class_name": arch.pipeline_class, "_diffusers_version": version}
    for name, class_name, config in (("unet", "UNet2DConditionModel", arch.unet), ("vae", "AutoencoderKL", arch.vae)):
        _write_json(folder / name / "config.json", {"_class_name": class_name, "_diffusers_version": version, **config})
        index[name] = ["diffusers", class_name]
    scheduler = {"_class_name": arch.scheduler_class, "_diffusers_version": version, **arch.scheduler}
    _write_json(folder / "scheduler" / "scheduler_config.json", scheduler)
    index["scheduler"] = ["diffusers", arch.scheduler_class]
    for slot, tokenizer_slot, spec in arch.slots():
        config = text_encoder_config(spec)
        config.save_pretrained(folder / slot)
        index[slot] = ["transformers", config.architectures[0]]
        if spec.vocabulary == "clip":
            write_clip_tokenizer(folder / tokenizer_slot, spec.pad_token)
        else:
            write_tokenizer(folder / tokenizer_slot)
        index[tokenizer_slot] = ["transformers", "CLIPTokenizer"]
    optional = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "image_encoder", "feature_extractor")
    for name in optional if arch.is_xl else ("safety_checker", "feature_extractor"):
        index.setdefault(name, [None, None])
    index.update(arch.extra_config)
    _write_json(folder / "model_index.json", index)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def predicts_v(unet: Any) -> bool:
    """AUTOMATIC1111's test for SD 2.x: at the last timestep a v-model's output is far below its input.

    A flat half-grey latent with a flat conditioning at t=999: an epsilon model answers with noise near the
    input, a v model with roughly minus the signal, so the mean difference is below -1.
    """
    import torch

    parameter = next(unet.parameters())
    with torch.no_grad():
        latent = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=parameter.device, dtype=parameter.dtype)
        context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=latent.device, dtype=latent.dtype)
        timestep = torch.tensor([999], device=latent.device)
        out = unet(latent, timestep, encoder_hidden_states=context).sample
        return bool((out.float() - latent.float()).mean().item() < -1)


def resolve_prediction(pipe: Any, family: str, header: CheckpointHeader) -> str | None:
    """Set the scheduler's prediction type to what the file declares or, for SD 2.x, what its UNet does.

    Returns the type chosen, or None when the file says nothing and the family has one kind only.
    """
    chosen = declared_prediction(header)
    if chosen is None and family in AMBIGUOUS_PREDICTION:
        chosen = V_PREDICTION if predicts_v(pipe.unet) else EPSILON
    if chosen is not None and pipe.scheduler.config.get("prediction_type") != chosen:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=chosen)
    return chosen
