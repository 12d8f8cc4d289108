"""Inpainting as AUTOMATIC1111 does it around the diffusion pass.

- The mask (white = repaint, ``inpainting_mask_invert`` swaps) is blurred by ``mask_blur``; the denoiser still
  sees it binarized (A1111 rounds its latent mask too), but the result is composited over the original
  with the blurred mask, so pixels outside it are the input's, exactly.
- ``inpaint_full_res`` ("only masked"): the mask's bounding box plus ``inpaint_full_res_padding``, widened
  to the output's aspect ratio, is cut out, generated at the full output size, scaled back and pasted.
- ``inpainting_fill``: 0 "fill" paints the masked area with the surrounding colours before encoding,
  1 "original" keeps it; 2 "latent noise" and 3 "latent nothing" have no diffusers equivalent and are
  done as "fill" with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3


@dataclass(frozen=True)
class InpaintPlan:
    """What to do around the pipeline call for one request (everything at the output size)."""

    original: Image.Image  # the init image, RGB, output size
    overlay_mask: Image.Image  # L, blurred: where the result shows through
    crop: tuple[int, int, int, int] | None  # "only masked": the region generated at full size


def prepare_mask(mask: Image.Image, size: tuple[int, int], invert: bool) -> Image.Image:
    gray = mask.convert("L").resize(size, Image.Resampling.LANCZOS)
    return ImageOps.invert(gray) if invert else gray


def blur(mask: Image.Image, radius: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def crop_region(mask: Image.Image, padding: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The mask's bounding box plus ``padding``, grown to the ``size`` aspect ratio, inside the image."""
    box = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
    if box is None:
        return None
    width, height = mask.size
    x1, y1 = max(box[0] - padding, 0), max(box[1] - padding, 0)
    x2, y2 = min(box[2] + padding, width), min(box[3] + padding, height)
    target = size[0] / size[1]
    w, h = x2 - x1, y2 - y1
    if w / h < target:  # too narrow: widen
        grow = int(h * target) - w
        x1, x2 = x1 - grow // 2, x2 + grow - grow // 2
    else:
        grow = int(w / target) - h
        y1, y2 = y1 - grow // 2, y2 + grow - grow // 2
    # Shift back inside the image, then clamp (a region larger than the image is the image).
    if x1 < 0:
        x2, x1 = x2 - x1, 0
    if x2 > width:
        x1, x2 = max(x1 - (x2 - width), 0), width
    if y1 < 0:
        y2, y1 = y2 - y1, 0
    if y2 > height:
        y1, y2 = max(y1 - (y2 - height), 0), height
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": the masked area painted with ever less blurred surrounding colours."""
    keep = ImageOps.invert(mask.point(lambda v: 255 if v > 0 else 0))
    result = Image.new("RGB", image.size, (0, 0, 0))
    for radius in (256, 64, 16, 4, 1, 0):
        blurred = image.filter(ImageFilter.GaussianBlur(radius)) if radius else image
        result = Image.composite(blurred, result, keep) if radius == 0 else Image.blend(result, blurred, 0.5)
    return Image.composite(image, result, keep)


def plan(
    init: Image.Image, mask: Image.Image, *, blur_radius: int, full_res: bool, padding: int
) -> tuple[InpaintPlan, Image.Image, Image.Image]:
    """The plan, plus the image and (sharp) mask the pipeline gets, at the output size."""
    size = init.size
    overlay = blur(mask, blur_radius)
    crop = crop_region(overlay, padding, size) if full_res else None
    image, sharp = init, mask
    if crop is not None:
        image = init.crop(crop).resize(size, Image.Resampling.LANCZOS)
        sharp = mask.crop(crop).resize(size, Image.Resampling.LANCZOS)
    return InpaintPlan(init.convert("RGB"), overlay, crop), image, sharp


def prefill(image: Image.Image, mask: Image.Image, mode: int) -> Image.Image:
    return image if mode == ORIGINAL else fill(image.convert("RGB"), mask)


def finish(result: Image.Image, plan: InpaintPlan) -> Image.Image:
    """Paste an "only masked" result back, then composite over the original with the blurred mask."""
    generated = result.convert("RGB")
    if plan.crop is not None:
        x1, y1, x2, y2 = plan.crop
        canvas = plan.original.copy()
        canvas.paste(generated.resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
        generated = canvas
    return Image.composite(generated, plan.original, plan.overlay_mask)
