"""``/sdapi/v1/options``: AUTOMATIC1111's settings, the ones this runtime applies and the ones it keeps."""

from __future__ import annotations

from typing import Any

from contract import FieldIssue
from inference_api.errors import invalid
from inference_api.selection import ModelSelection


class A1111Options:
    def __init__(self, selection: ModelSelection) -> None:
        self._selection = selection
        self._values: dict[str, Any] = {"CLIP_stop_at_last_layers": 1}

    @property
    def clip_skip(self) -> int:
        return int(self._values.get("CLIP_stop_at_last_layers") or 1)

    @property
    def values(self) -> dict[str, Any]:
        """The options a request's ``override_settings`` start from (a copy)."""
        return dict(self._values)

    def snapshot(self) -> dict[str, Any]:
        current = self._selection.current
        return {
            **self._values,
            "sd_model_checkpoint": current.title if current else None,
            "sd_checkpoints_limit": self._selection.cache.capacity,
            "samples_format": "png",
        }

    async def apply(self, body: dict[str, Any]) -> None:
        issues: list[FieldIssue] = []
        clip = body.get("CLIP_stop_at_last_layers")
        if clip is not None and (not isinstance(clip, int) or isinstance(clip, bool) or not 1 <= clip <= 12):
            issues.append(FieldIssue("CLIP_stop_at_last_layers", "range", "must be an integer between 1 and 12"))
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            issues.append(FieldIssue("sd_model_checkpoint", "type", "must be a model title"))
        if issues:
            raise invalid(issues)
        if checkpoint:
            await self._selection.switch(checkpoint)
        # A1111 keeps every option it is sent; we keep the simple ones and apply those we understand.
        for key, value in body.items():
            if key != "sd_model_checkpoint" and (value is None or isinstance(value, str | int | float | bool)):
                self._values[key] = value
