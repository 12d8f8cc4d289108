"""Request and response bodies of the AUTOMATIC1111 API subset, with the contract's bounds.

Field names and defaults follow AUTOMATIC1111's API. Unknown fields are kept (and echoed back in
``parameters``) but ignored, as A1111 does with options of extensions it does not have.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contract import DEFAULT_LIMITS, batch_size_limit
from inference_api.scripts import check_scripts

L = DEFAULT_LIMITS
MAX_SEED = 2**63 - 1


def _drop_nulls(data: Any) -> Any:
    # A1111 clients send explicit nulls for "unset" (e.g. "styles": null, "seed": null): use our defaults.
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


def _multiple_of_8(value: int) -> int:
    if value % L.side_multiple:
        raise ValueError(f"must be a multiple of {L.side_multiple}")
    return value


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(default="", max_length=L.max_prompt_chars)
    negative_prompt: str = Field(default="", max_length=L.max_prompt_chars)
    styles: list[str] | None = None
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED)
    subseed: int = Field(default=-1, ge=-1, le=MAX_SEED)
    subseed_strength: float = Field(default=0.0, ge=0, le=1)
    sampler_name: str | None = Field(default=None, max_length=64)
    sampler_index: str | None = Field(default=None, max_length=64)
    scheduler: str | None = Field(default=None, max_length=64)
    # Before batch_size: its bound depends on whether an AnimateDiff video is asked for.
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    # Images per batch, or the frames of an AnimateDiff video.
    batch_size: int = Field(default=1, ge=1, le=max(L.max_batch_size, L.max_video_frames))
    n_iter: int = Field(default=1, ge=1, le=L.max_n_iter)
    steps: int = Field(default=50, ge=1, le=L.max_steps)
    cfg_scale: float = Field(default=7.0, ge=0, le=50)
    width: int = Field(default=512, ge=L.min_side, le=L.max_side)
    height: int = Field(default=512, ge=L.min_side, le=L.max_side)
    restore_faces: bool | None = None
    tiling: bool | None = None
    eta: float | None = Field(default=None, ge=0, le=1)
    clip_skip: int | None = Field(default=None, ge=1, le=12)
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    send_images: bool = True
    save_images: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_nulls(cls, data: Any) -> Any:
        return _drop_nulls(data)

    @field_validator("width", "height")
    @classmethod
    def _side_multiple(cls, value: int) -> int:
        return _multiple_of_8(value)

    @field_validator("alwayson_scripts")
    @classmethod
    def _scripts_it_runs(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return check_scripts(value)
        except ValueError as exc:
            raise PydanticCustomError("unsupported", str(exc)) from None

    @field_validator("batch_size")
    @classmethod
    def _batch_bound(cls, value: int, info: ValidationInfo) -> int:
        most = batch_size_limit(info.data.get("alwayson_scripts"), L)
        if value > most:
            raise ValueError(f"batch_size must be between 1 and {most}")
        return value

    @model_validator(mode="after")
    def _total_pixels(self) -> GenerationRequest:
        pixels = self.width * self.height * self.batch_size * self.n_iter
        if pixels > L.max_total_pixels:
            raise ValueError(f"width*height*batch_size*n_iter is {pixels}, over {L.max_total_pixels}")
        return self

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    def checkpoint_override(self) -> str | None:
        value = (self.override_settings or {}).get("sd_model_checkpoint")
        return value if isinstance(value, str) and value else None


class Txt2ImgRequest(GenerationRequest):
    enable_hr: bool = False
    denoising_strength: float | None = Field(default=None, ge=0, le=1)
    hr_scale: float = Field(default=2.0, ge=1, le=8)
    hr_upscaler: str | None = Field(default=None, max_length=128)
    hr_second_pass_steps: int = Field(default=0, ge=0, le=L.max_steps)
    hr_resize_x: int = Field(default=0, ge=0, le=L.max_side)
    hr_resize_y: int = Field(default=0, ge=0, le=L.max_side)
    hr_sampler_name: str | None = Field(default=None, max_length=64)
    hr_scheduler: str | None = Field(default=None, max_length=64)
    hr_prompt: str = Field(default="", max_length=L.max_prompt_chars)
    hr_negative_prompt: str = Field(default="", max_length=L.max_prompt_chars)


class Img2ImgRequest(GenerationRequest):
    init_images: list[str] = Field(min_length=1, max_length=L.max_batch_images)
    resize_mode: int = Field(default=0, ge=0, le=3)
    denoising_strength: float = Field(default=0.75, ge=0, le=1)
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur: int = Field(default=4, ge=0, le=64)
    inpainting_fill: int = Field(default=0, ge=0, le=3)
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = Field(default=32, ge=0, le=1024)
    inpainting_mask_invert: int = Field(default=0, ge=0, le=1)
    include_init_images: bool = False


class ExtrasRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    resize_mode: int = Field(default=0, ge=0, le=1)
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_weight: float = Field(default=0, ge=0, le=1)
    upscaling_resize: float = Field(default=2, gt=0, le=L.max_upscale_factor)
    upscaling_resize_w: int = Field(default=512, ge=1, le=4 * L.max_side)
    upscaling_resize_h: int = Field(default=512, ge=1, le=4 * L.max_side)
    upscaling_crop: bool = True
    upscaler_1: str = Field(default="None", max_length=128)
    upscaler_2: str = Field(default="None", max_length=128)
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1)
    upscale_first: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_nulls(cls, data: Any) -> Any:
        return _drop_nulls(data)


class ExtraSingleImageRequest(ExtrasRequest):
    image: str = Field(min_length=1)


class FileData(BaseModel):
    data: str = Field(min_length=1)
    name: str = Field(default="image", max_length=256)


class ExtraBatchImagesRequest(ExtrasRequest):
    imageList: list[FileData] = Field(min_length=1, max_length=L.max_batch_images)


class ImagesResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class ExtraSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtraBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None
