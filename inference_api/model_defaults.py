"""A model folder's own generation defaults (``generation_defaults.json`` beside ``model_index.json``).

A model trained at a small size (the toy-world model: 32x32, 20 steps) says so there; requests that leave
``width``, ``height``, ``steps`` or ``cfg_scale`` out get the model's values instead of A1111's 512x512/50.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULTS_FILE = "generation_defaults.json"
APPLIED = ("width", "height", "steps", "cfg_scale")


class _DefaultsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    width: int = Field(ge=8, le=8192, multiple_of=8)
    height: int = Field(ge=8, le=8192, multiple_of=8)
    steps: int = Field(ge=1, le=150)
    cfg_scale: float = Field(ge=0, le=50)
    example_prompts: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ModelDefaults:
    width: int
    height: int
    steps: int
    cfg_scale: float
    example_prompts: tuple[str, ...] = ()


def read_defaults(folder: Path) -> ModelDefaults | None:
    """The folder's defaults, or None when it has none or they are unreadable (then A1111's apply)."""
    path = folder / DEFAULTS_FILE
    if not path.is_file():
        return None
    try:
        parsed = _DefaultsFile.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None
    return ModelDefaults(parsed.width, parsed.height, parsed.steps, parsed.cfg_scale, tuple(parsed.example_prompts))


Request = TypeVar("Request", bound=BaseModel)


def apply_defaults(req: Request, defaults: ModelDefaults | None) -> Request:
    """``req`` with the model's defaults in the fields the client did not set."""
    if defaults is None:
        return req
    update: dict[str, Any] = {
        name: getattr(defaults, name) for name in APPLIED if name not in req.model_fields_set and hasattr(req, name)
    }
    return req.model_copy(update=update) if update else req
