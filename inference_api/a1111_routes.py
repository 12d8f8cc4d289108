"""The rest of the AUTOMATIC1111 API surface client libraries call: listings, png-info, memory, skip, and the
ControlNet extension's informational routes. Each answers in A1111's shape, with an empty list where this
runtime has nothing of that kind (hypernetworks, face restorers, styles)."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from contract import FieldIssue
from inference_api.errors import invalid
from inference_api.images import decode_image, encode_png
from inference_api.networks import NetworkCatalog

LATENT_UPSCALE_MODES = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)
CONTROLNET_MODULES = ("none",)
CONTROLNET_API_VERSION = 2
_PARAM = re.compile(r'\s*([\w][\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


class PngInfoRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = Field(min_length=1)


class InterrogateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = ""
    model: str = "clip"


class ControlNetDetectRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_images: list[str] = Field(default_factory=list)  # what some clients (webuiapi) send


def parse_infotext(text: str) -> dict[str, Any]:
    """A1111's generation parameters (the PNG ``parameters`` text) as a dict, as its png-info answers."""
    lines = text.strip().split("\n")
    params: dict[str, Any] = {}
    last = lines[-1] if lines else ""
    found = _PARAM.findall(last)
    if len(found) >= 3:
        lines = lines[:-1]
        for key, value in found:
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1].replace('\\"', '"')
            params[key.strip()] = value
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line.removeprefix("Negative prompt:").strip()
        (negative if in_negative else prompt).append(line)
    params["Prompt"] = "\n".join(prompt)
    params["Negative prompt"] = "\n".join(negative)
    size = str(params.get("Size", ""))
    if "x" in size:
        params["Size-1"], params["Size-2"] = size.split("x", 1)
    return params


def png_info(data: str) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        image = Image.open(io.BytesIO(base64.b64decode(raw, validate=False)))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise invalid([FieldIssue("image", "image", "not a base64-encoded image")]) from None
    items = {str(k): v for k, v in image.info.items() if isinstance(v, str | int | float)}
    text = str(items.pop("parameters", ""))
    return {"info": text, "items": items, "parameters": parse_infotext(text) if text else {}}


def memory() -> dict[str, Any]:
    """RAM of this process and the accelerator's memory, in A1111's shape (bytes)."""
    import psutil
    import torch

    process = psutil.Process(os.getpid())
    rss = process.memory_info().rss
    total = psutil.virtual_memory().total
    result: dict[str, Any] = {"ram": {"free": total - rss, "used": rss, "total": total}}
    if torch.cuda.is_available():
        free, cuda_total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        peaks = {
            name: {"current": stats.get(f"{key}.all.current", 0), "peak": stats.get(f"{key}.all.peak", 0)}
            for name, key in (
                ("active", "active_bytes"),
                ("allocated", "allocated_bytes"),
                ("reserved", "reserved_bytes"),
                ("inactive", "inactive_split_bytes"),
            )
        }
        result["cuda"] = {
            "system": {"free": free, "used": cuda_total - free, "total": cuda_total},
            **peaks,
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    else:
        result["cuda"] = {"error": "no CUDA device"}
    return result


def router(engine: Any) -> APIRouter:
    """Routes over the engine's catalogs; ``engine`` is :class:`inference_api.engine.Engine`."""
    api = APIRouter()
    networks: NetworkCatalog = engine.networks

    @api.post("/sdapi/v1/png-info")
    async def png_info_route(req: PngInfoRequest) -> dict[str, Any]:
        return png_info(req.image)

    @api.post("/sdapi/v1/skip")
    async def skip() -> None:
        # A1111 moves on to the next image of a batch; a merged batch here is one call, so there is none.
        return None

    @api.post("/sdapi/v1/interrogate")
    async def interrogate(req: InterrogateRequest) -> None:
        raise invalid([FieldIssue("model", "unsupported", f"interrogator {req.model!r} is not available here")])

    @api.get("/sdapi/v1/sd-vae")
    async def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": f.path.name, "filename": str(f.path)} for f in networks.vaes]

    @api.post("/sdapi/v1/refresh-vae")
    async def refresh_vae() -> None:
        networks.refresh()

    @api.get("/sdapi/v1/hypernetworks")
    async def hypernetworks() -> list[dict[str, Any]]:
        return []

    @api.get("/sdapi/v1/face-restorers")
    async def face_restorers() -> list[dict[str, Any]]:
        return []

    @api.get("/sdapi/v1/prompt-styles")
    async def prompt_styles() -> list[dict[str, Any]]:
        return []

    @api.get("/sdapi/v1/realesrgan-models")
    async def realesrgan_models() -> list[dict[str, Any]]:
        return [{"name": u.name, "path": str(u.path), "scale": None} for u in engine.selection.catalog.upscalers]

    @api.get("/sdapi/v1/latent-upscale-modes")
    async def latent_upscale_modes() -> list[dict[str, Any]]:
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @api.get("/sdapi/v1/scripts")
    async def scripts() -> dict[str, list[str]]:
        names = sorted(name.lower() for name in engine.script_names)
        return {"txt2img": names, "img2img": names}

    @api.get("/sdapi/v1/script-info")
    async def script_info() -> list[dict[str, Any]]:
        return [
            {"name": name.lower(), "is_alwayson": True, "is_img2img": img2img, "args": []}
            for name in sorted(engine.script_names)
            for img2img in (False, True)
        ]

    @api.get("/sdapi/v1/memory")
    async def memory_route() -> dict[str, Any]:
        return memory()

    @api.get("/sdapi/v1/cmd-flags")
    async def cmd_flags() -> dict[str, Any]:
        root = engine.settings.models_dir
        return {
            "api": True,
            "nowebui": True,
            "ckpt_dir": str(root),
            "lora_dir": str(root / "Lora"),
            "embeddings_dir": str(root / "embeddings"),
            "vae_dir": str(root / "VAE"),
            "device": engine.device.device,
        }

    @api.get("/controlnet/version")
    async def controlnet_version() -> dict[str, int]:
        return {"version": CONTROLNET_API_VERSION}

    @api.get("/controlnet/model_list")
    async def controlnet_model_list(update: bool = True) -> dict[str, list[str]]:
        return {"model_list": [f.name for f in networks.controlnets]}

    @api.get("/controlnet/module_list")
    async def controlnet_module_list(alias_names: bool = False) -> dict[str, Any]:
        detail = {name: {"model_free": False, "sliders": []} for name in CONTROLNET_MODULES}
        return {"module_list": list(CONTROLNET_MODULES), "module_detail": detail}

    @api.post("/controlnet/detect")
    async def controlnet_detect(req: ControlNetDetectRequest) -> dict[str, Any]:
        if req.controlnet_module not in CONTROLNET_MODULES:
            supported = ", ".join(CONTROLNET_MODULES)
            message = f"preprocessor {req.controlnet_module!r} is not available; supported: {supported}"
            raise invalid([FieldIssue("controlnet_module", "one_of", message)])
        # "none": the input is the control map already.
        images = req.controlnet_input_images or req.controlnet_images
        maps = [encode_png(decode_image(data, f"controlnet_input_images.{i}")) for i, data in enumerate(images)]
        return {"images": maps, "info": "Success"}

    return api
