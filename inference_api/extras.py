"""extra-single-image / extra-batch-images: resamplers on a plain thread, upscaler models on the worker."""

from __future__ import annotations

import asyncio
import functools

from PIL import Image

from contract import FieldIssue
from inference_api import esrgan
from inference_api.cache import LruCache
from inference_api.catalog import Catalog
from inference_api.errors import InvalidRequest, invalid
from inference_api.http_schemas import ExtraBatchImagesRequest, ExtraSingleImageRequest, ExtrasRequest
from inference_api.images import decode_image, encode_png
from inference_api.loading import DeviceSettings
from inference_api.upscale import UpscaleOutcome, check_target, html_info, resolve_name, upscale_one
from inference_api.worker import Worker

MAX_UPSCALERS_LOADED = 2


class Extras:
    def __init__(self, catalog: Catalog, device: DeviceSettings, worker: Worker, compress_level: int) -> None:
        self._catalog = catalog
        self._compress_level = compress_level
        self._device = device
        self._worker = worker
        self.upscalers: LruCache[esrgan.EsrganUpscaler] = LruCache(MAX_UPSCALERS_LOADED)

    async def single(self, req: ExtraSingleImageRequest) -> dict[str, object]:
        image = await asyncio.to_thread(decode_image, req.image, "image")
        check_target(image.width, image.height, req)
        outcome = await self._upscale(image, req)
        return {"html_info": html_info(req, outcome.notes), "image": await self._encode(outcome.image)}

    async def batch(self, req: ExtraBatchImagesRequest) -> dict[str, object]:
        images: list[Image.Image] = []
        issues: list[FieldIssue] = []
        for i, item in enumerate(req.imageList):
            try:
                image = await asyncio.to_thread(decode_image, item.data, f"imageList.{i}.data")
                check_target(image.width, image.height, req)
                images.append(image)
            except InvalidRequest as exc:
                issues += exc.fields
        if issues:
            raise invalid(issues)
        notes: list[str] = []
        encoded = []
        for image in images:
            outcome = await self._upscale(image, req)
            notes += outcome.notes
            encoded.append(await self._encode(outcome.image))
        return {"html_info": html_info(req, notes), "images": encoded}

    async def _encode(self, image: Image.Image) -> str:
        return await asyncio.to_thread(encode_png, image, None, self._compress_level)

    async def _upscale(self, image: Image.Image, req: ExtrasRequest) -> UpscaleOutcome:
        available = {u.name for u in self._catalog.upscalers}
        uses_model = any(resolve_name(n, available) for n in (req.upscaler_1, req.upscaler_2))
        work = functools.partial(upscale_one, image, req, available, self.run_model)
        # Resamplers are plain CPU work; model upscalers need the accelerator, so the worker thread.
        return await (self._worker.run(work) if uses_model else asyncio.to_thread(work))

    def run_model(self, name: str, image: Image.Image) -> Image.Image:
        """An ESRGAN-family upscaler of the catalog on ``image``. Worker thread only."""
        upscaler = self.upscalers.get(name)
        if upscaler is None:
            entry = next(u for u in self._catalog.upscalers if u.name == name)
            upscaler = esrgan.EsrganUpscaler(esrgan.load(entry.path), self._device.device, self._device.dtype)
            self.upscalers.put(name, upscaler)
        return upscaler.upscale(image)
