"""A small HTTP client of the task API: submit, status, cancel, wait, download."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Endpoint:
    url: str
    api_key: str | None = None
    runtimes: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the key must never end up in a log or a traceback
        return f"Endpoint(url={self.url!r}, api_key={'***' if self.api_key else None})"


@dataclass
class ApiError(Exception):
    """A non-2xx answer; carries the contract's error body fields when the API sent them."""

    status: int
    code: str
    message: str
    fields: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"HTTP {self.status} {self.code}: {self.message}"]
        lines += [f"  {f.get('field', '?')}: {f.get('message', '')} [{f.get('rule', '')}]" for f in self.fields]
        return "\n".join(lines)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        return cls(
            status=response.status_code,
            code=str(error.get("code") or response.reason_phrase or "error"),
            message=str(error.get("message") or response.text[:500] or "no body"),
            fields=[f for f in error.get("fields") or [] if isinstance(f, dict)],
        )


def build_request(
    prompt: str,
    *,
    runtime: str,
    tasktype: str = "text-to-image",
    steps: int | None = None,
    size: tuple[int, int] | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    task_id: str | None = None,
    prefix: str | None = None,
    init_image: str | None = None,
    context: Any = None,
    priority: str | None = None,
    webhook: str | None = None,
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """A v1alpha2 body for a generation task. Only the fields the user set are sent: the runtime has defaults."""
    metadata = {
        "runtime": runtime,
        "tasktype": tasktype,
        **_given(
            id=task_id, prefix=prefix, context=context, priority=priority, webhook=webhook, ttl_seconds=ttl_seconds
        ),
    }
    width, height = size if size is not None else (None, None)
    content = {
        "prompt": prompt,
        **_given(
            negative_prompt=negative_prompt or None,
            steps=steps,
            width=width,
            height=height,
            seed=seed,
            init_images=[init_image] if init_image is not None else None,
        ),
    }
    return {"task": {"metadata": metadata, "content": content}}


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that were set (not None), in the order given."""
    return {name: value for name, value in fields.items() if value is not None}


class ApiClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        headers = {"x-api-key": endpoint.api_key} if endpoint.api_key else {}
        self._http = httpx.Client(
            base_url=endpoint.url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        # Result downloads go to presigned S3 URLs: a separate client so the API key is never sent there.
        self._downloads = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)

    def close(self) -> None:
        self._http.close()
        self._downloads.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        data = response.json() if response.content else {}
        return data if isinstance(data, dict) else {"value": data}

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/tasks", json=body)

    def status(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tasks/{quote(task_id, safe='')}")

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tasks/{quote(task_id, safe='')}")

    def wait(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        on_update: Callable[[dict[str, Any], float], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the status until it is terminal; ``on_update(record, elapsed)`` after each poll."""
        started = time.monotonic()
        while True:
            record = self.status(task_id)
            elapsed = time.monotonic() - started
            if on_update is not None:
                on_update(record, elapsed)
            if record.get("status") in TERMINAL:
                return record
            if elapsed > timeout:
                raise TimeoutError(f"task {task_id} still {record.get('status')} after {timeout:.0f}s")
            time.sleep(min(interval, max(0.05, timeout - elapsed)))

    def download(self, url: str, directory: Path) -> Path:
        """Fetch one result URL (http/https, e.g. presigned) into ``directory``; returns the file path."""
        if urlsplit(url).scheme not in {"http", "https"}:
            raise ValueError(f"cannot download {url!r}: not an http(s) URL")
        name = Path(urlsplit(url).path).name or "result"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        with self._downloads.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, "download_failed", f"GET {urlsplit(url).path} failed")
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target
