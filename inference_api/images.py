"""Images on the wire: base64 PNG in and out, with the bounds that keep a bad payload from hurting the server."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from inference_api.errors import InvalidRequest, invalid_field

LANCZOS = Image.Resampling.LANCZOS
# A decoded input larger than this is refused before it is decompressed (PIL's bomb guard, made strict).
MAX_INPUT_PIXELS = 4096 * 4096


def decode_image(data: str, field: str) -> Image.Image:
    """Decode a base64 (optionally ``data:image/...;base64,``) image into RGB, or raise a 422 naming ``field``."""
    if not isinstance(data, str) or not data:
        raise invalid_field(field, "image", "must be a non-empty base64-encoded image")
    payload = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_field(field, "base64", "is not valid base64 (URLs must be resolved by the caller)") from None
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            width, height = probe.size
            if width * height > MAX_INPUT_PIXELS:
                raise invalid_field(field, "max_pixels", f"image is {width}x{height}, over {MAX_INPUT_PIXELS} pixels")
            probe.load()
            return _to_rgb(probe)
    except InvalidRequest:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise invalid_field(field, "image", "is not a decodable image (PNG, JPEG, WebP...)") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent pixels become white, as AUTOMATIC1111 flattens them.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB")


FAST_PNG = 1  # zlib level: a 1024² image encodes several times faster than at PIL's default 6


def encode_png(image: Image.Image, parameters: str | None = None, compress_level: int = FAST_PNG) -> str:
    """PNG as base64; ``parameters`` is stored in a text chunk the way AUTOMATIC1111 stores its infotext."""
    info = None
    if parameters:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def resize_for_img2img(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """AUTOMATIC1111 resize modes: 0 just resize, 1 crop and resize, 2 resize and fill, 3 (latent) as 0."""
    if image.size == (width, height):
        return image
    if mode == 1:
        # Crop-to-fit samples the centred source box straight into the target size: scaling the whole
        # image to cover the target first would allocate the cover box (2048x8192000 for a 1x4000 input).
        scale = max(width / image.width, height / image.height)
        box_w, box_h = width / scale, height / scale
        left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
        return image.resize((width, height), LANCZOS, box=(left, top, left + box_w, top + box_h))
    if mode == 2:
        scale = min(width / image.width, height / image.height)
        inner = image.resize(_scaled(image, scale), LANCZOS)
        # Fill the borders by stretching the image behind it, as A1111 does, rather than with a flat colour.
        canvas = image.resize((width, height), LANCZOS)
        canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return canvas
    return image.resize((width, height), LANCZOS)


def _scaled(image: Image.Image, scale: float) -> tuple[int, int]:
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))
