"""Reading result links out of a ``GET /tasks/{id}`` answer."""

from __future__ import annotations

from typing import Any


def result_urls(record: dict[str, Any]) -> list[str]:
    """The presigned URL of each image where the API minted one, else its s3:// URI (in image order)."""
    images = record.get("images")
    if isinstance(images, list) and images:
        out = []
        for link in images:
            if isinstance(link, dict):
                url = link.get("url") or link.get("s3")
                if isinstance(url, str):
                    out.append(url)
        return out
    uris = record.get("image_url")
    return [u for u in uris if isinstance(u, str)] if isinstance(uris, list) else []
