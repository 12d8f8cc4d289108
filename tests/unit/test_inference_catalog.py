"""Model discovery from headers and folder indexes, lenient name matching, and the LRU pipeline cache."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from inference_api.cache import LruCache
from inference_api.catalog import Catalog, classify_checkpoint, discover, safetensors_header
from tests.runtime_helpers import write_tiny_esrgan


def _fake_safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A valid safetensors file with zero-filled tensors: enough for header-only discovery."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


UNET = {"model.diffusion_model.input_blocks.0.0.weight": [8, 4, 1, 1]}


@pytest.mark.parametrize(
    ("extra", "family"),
    [
        ({"cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": [77, 8]}, "v1"),
        ({"cond_stage_model.model.token_embedding.weight": [10, 8]}, "v2"),
        ({"conditioner.embedders.1.model.positional_embedding": [77, 8]}, "xl_base"),
        ({"conditioner.embedders.0.model.text_projection": [8, 8]}, "xl_refiner"),
    ],
)
def test_checkpoint_family_from_header(tmp_path: Path, extra: dict[str, list[int]], family: str) -> None:
    path = _fake_safetensors(tmp_path / "m.safetensors", {**UNET, **extra})
    assert classify_checkpoint(safetensors_header(path)) == family


def test_inpainting_checkpoints_are_told_apart_by_the_unet_input(tmp_path: Path) -> None:
    path = _fake_safetensors(
        tmp_path / "m.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": [8, 9, 3, 3]}
    )
    assert classify_checkpoint(safetensors_header(path)) == "inpainting"


def test_discovery_lists_checkpoints_and_upscalers_but_not_loras_or_configs(tmp_path: Path) -> None:
    _fake_safetensors(tmp_path / "Stable-diffusion" / "sd15.safetensors", UNET)
    _fake_safetensors(tmp_path / "Lora" / "style.safetensors", {"lora_unet_down.alpha": [1]})
    _fake_safetensors(tmp_path / "broken.safetensors", {})
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 4)
    write_tiny_esrgan(tmp_path / "ESRGAN" / "RealESRGAN_x4plus.safetensors")
    folder = tmp_path / "sdxl-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    _fake_safetensors(folder / "unet" / "diffusion_pytorch_model.safetensors", UNET)  # part of the folder
    upscale = tmp_path / "x4-upscaler"
    upscale.mkdir()
    (upscale / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionUpscalePipeline"}))
    (tmp_path / "configs" / "v1").mkdir(parents=True)
    (tmp_path / "configs" / "v1" / "model_index.json").write_text(json.dumps({"_class_name": "X"}))

    found = discover(tmp_path)
    assert [(m.name, m.kind, m.family) for m in found.models] == [
        ("Stable-diffusion/sd15.safetensors", "single_file", "v1"),
        ("sdxl-folder", "diffusers", "StableDiffusionXLPipeline"),
    ]
    assert [u.name for u in found.upscalers] == ["RealESRGAN_x4plus"]


def test_missing_directory_is_empty_not_an_error(tmp_path: Path) -> None:
    assert discover(tmp_path / "not-mounted-yet").models == []


def test_catalog_matches_titles_files_stems_and_a1111_hash_suffixes(tmp_path: Path) -> None:
    _fake_safetensors(tmp_path / "Stable-diffusion" / "DreamModel.safetensors", UNET)
    catalog = Catalog(tmp_path)
    catalog.refresh()
    title = "Stable-diffusion/DreamModel.safetensors"
    for name in (title, "DreamModel.safetensors", "dreammodel", "DreamModel.safetensors [a1b2c3d4]", f" {title} "):
        entry = catalog.find(name)
        assert entry is not None and entry.title == title, name
    assert catalog.find("Other") is None
    assert catalog.models[0].describe()["model_name"] == "DreamModel"


def test_lru_cache_evicts_least_recently_used_and_frees_it() -> None:
    freed: list[str] = []
    cache = LruCache(2, on_evict=freed.append)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C")
    assert freed == ["B"] and cache.names() == ["a", "c"]
    cache.make_room()  # before loading another model, free the oldest first
    assert freed == ["B", "A"] and cache.names() == ["c"]
    assert cache.clear() == 1 and freed[-1] == "C" and "c" not in cache
    assert cache.stats.evictions == 2 and cache.stats.loads == 3 and cache.stats.hits == 1
    with pytest.raises(ValueError):
        LruCache(0)
