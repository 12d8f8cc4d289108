"""What a request's ``alwayson_scripts`` change about its bounds."""

from __future__ import annotations

from typing import Any

from contract.limits import DEFAULT_LIMITS, Limits


def animatediff_enabled(scripts: Any) -> bool:
    """Whether ``alwayson_scripts`` asks for an AnimateDiff video (present, and not switched off)."""
    if not isinstance(scripts, dict):
        return False
    entry = next((v for k, v in scripts.items() if str(k).lower() == "animatediff"), None)
    args = entry.get("args") if isinstance(entry, dict) else None
    if not isinstance(args, list) or not args or args[0] is False:
        return False
    first = args[0]
    return not (isinstance(first, dict) and first.get("enable", first.get("enabled", True)) is False)


def batch_size_limit(scripts: Any, limits: Limits = DEFAULT_LIMITS) -> int:
    """batch_size's bound: the frame count for an AnimateDiff video, else images per batch."""
    return limits.max_video_frames if animatediff_enabled(scripts) else limits.max_batch_size
