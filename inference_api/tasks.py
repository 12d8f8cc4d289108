"""What a generation request asks for: one name per task kind, used by jobs, pipelines and progress."""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"

    @property
    def uses_init_image(self) -> bool:
        return self is not TaskKind.TXT2IMG
