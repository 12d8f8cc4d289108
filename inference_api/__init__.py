"""The diffusers runtime: an AUTOMATIC1111-compatible HTTP API (``python -m inference_api serve``)."""

from __future__ import annotations

__version__ = "0.1.0"
