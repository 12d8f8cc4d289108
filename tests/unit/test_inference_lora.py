"""kohya/A1111 LoRA files: key names in both UNet namings, merging, exact restore, tags in prompts, the builder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference_api.lora import LoraState, ResolvedLora, apply, build_tiny_lora, module_index
from inference_api.networks import LoraUse, NetworkCatalog, lora_uses, strip_tags
from inference_api.tiny import build_tiny_model
from tests.runtime_helpers import ROOT


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("lora"), name="tiny-sd")


def _pipe(folder: Path) -> object:
    import diffusers

    return diffusers.DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)


def test_tags_are_parsed_and_removed() -> None:
    uses, notes = lora_uses(["a <lora:A:0.5> cat <lora:b> <lora:A:0.25:1>", "<lora:c:0.8> <hypernet:h:1>"])
    assert uses == [LoraUse("A", 0.75, 1.5), LoraUse("b", 1.0, 1.0), LoraUse("c", 0.8, 0.8)]
    assert notes and "hypernet" in notes[0]
    assert strip_tags("a <lora:A:0.5> cat") == "a  cat"


def test_ldm_names_apply_the_same_weights_as_diffusers_names(model: Path, tmp_path: Path) -> None:
    path = build_tiny_lora(model, tmp_path / "d.safetensors", seed=4)
    pipe = _pipe(model)
    index = module_index(pipe)
    ldm_name = {}
    for name, module in index.items():
        if name.startswith(("lora_unet_input_blocks", "lora_unet_output_blocks", "lora_unet_middle_block")):
            ldm_name[id(module)] = name
    renamed = {}
    for key, value in load_file(str(path)).items():
        base, _, suffix = key.partition(".")
        module = index[base]
        renamed[(ldm_name.get(id(module), base)) + "." + suffix] = value
    assert any(k.startswith("lora_unet_input_blocks") for k in renamed)
    ldm_path = tmp_path / "ldm.safetensors"
    save_file(renamed, str(ldm_path))
    results = []
    for file in (path, ldm_path):
        state = LoraState()
        assert apply(pipe, state, [ResolvedLora(LoraUse("x", 1.0, 1.0), file)]) == []
        results.append({k: v.clone() for k, v in pipe.unet.state_dict().items()})  # type: ignore[attr-defined]
        apply(pipe, state, [])
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_merge_restore_multipliers_and_conv_layers(model: Path, tmp_path: Path) -> None:
    pipe = _pipe(model)
    unet = pipe.unet  # type: ignore[attr-defined]
    conv = unet.down_blocks[0].resnets[0].conv1
    down, up = torch.randn(2, conv.in_channels, 3, 3), torch.randn(conv.out_channels, 2, 1, 1)
    name = "lora_unet_down_blocks_0_resnets_0_conv1"
    file = tmp_path / "locon.safetensors"
    save_file(
        {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(1.0)}, str(file)
    )
    original = conv.weight.detach().clone()
    state = LoraState()
    apply(pipe, state, [ResolvedLora(LoraUse("locon", 1.0, 0.5), file)])
    expected = original + 0.5 * 0.5 * torch.einsum("or,rihw->oihw", up.flatten(1), down)
    assert torch.allclose(conv.weight, expected, atol=1e-6)
    apply(pipe, state, [ResolvedLora(LoraUse("locon", 1.0, 0.0), file)])  # unet multiplier 0: untouched
    assert torch.equal(conv.weight, original)


def test_cli_builds_a_lora_the_catalog_lists(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "models" / "Lora" / "cli-lora.safetensors"
    cmd = [sys.executable, "-m", "inference_api", "build-tiny-lora", str(model), str(out), "--seed", "3"]
    subprocess.run(cmd, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""})
    keys = load_file(str(out))
    assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in keys)
    assert any(k.startswith("lora_unet_down_blocks_") and k.endswith(".lora_up.weight") for k in keys)
    catalog = NetworkCatalog(tmp_path / "models")
    catalog.refresh()
    found = catalog.find_lora("CLI-LORA")
    assert found is not None and found.metadata["ss_network_module"] == "networks.lora"
