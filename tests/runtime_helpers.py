"""Helpers for the inference runtime's tests: tiny model directories and real servers on loopback."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from local_stack.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
TINY = "tiny-sd"
TINY_B = "tiny-sd-b"  # same architecture, other weights: for model switching
TINY_SINGLE = "tiny-sd-single.safetensors"
TINY_XL = "tiny-sdxl"
TINY_ESRGAN = "tiny-esrgan"


# How each named tiny model is built: the same seed wherever it is built, so tests may compare their images.
_TINY_RECIPES: dict[str, dict[str, Any]] = {
    TINY: {"seed": 0},
    TINY_B: {"seed": 1},
    TINY_SINGLE: {"single_file": True, "seed": 2},
    TINY_XL: {"xl": True, "seed": 3},
}


def build_tiny_models(root: Path, *names: str) -> Path:
    """The named tiny models (TINY, TINY_B, TINY_SINGLE, TINY_XL) written under ``root``; returns ``root``."""
    from inference_api.tiny import build_tiny_model

    for name in names:
        build_tiny_model(root, name=Path(name).stem, **_TINY_RECIPES[name])
    return root


def build_model_dir(root: Path, *, xl: bool = True, esrgan: bool = True) -> Path:
    """A model directory like the cluster's mount: diffusers folders, a single file, an upscaler."""
    build_tiny_models(root, TINY, TINY_B, TINY_SINGLE, *([TINY_XL] if xl else []))
    if esrgan:
        write_tiny_esrgan(root / "ESRGAN" / f"{TINY_ESRGAN}.safetensors")
    return root


@pytest.fixture(name="_one_torch_thread", scope="module", autouse=True)
def one_torch_thread_fixture() -> None:
    """Autouse in each test module that imports it: torch computes on one thread (2-core machines)."""
    import torch

    torch.set_num_threads(1)


def write_tiny_esrgan(path: Path, *, scale: int = 4, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    from inference_api.esrgan import RRDBNet

    torch.manual_seed(seed)
    model = RRDBNet(scale=scale, features=8, blocks=1, growth=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def png_b64(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 40, 40), mode: str = "RGB") -> str:
    image = Image.new(mode, size, color if mode == "RGB" else (*color, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def wait_until(condition: Callable[[], Any], *, timeout: float = 120.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll a real condition until it is truthy (never a fixed sleep); fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


def _get_ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class RunningServer:
    url: str
    client: httpx.Client
    log_path: Path | None = None
    app: Any = None  # the FastAPI app, for servers run in the test process
    pid: int | None = None  # the server's process, for servers run as a child

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def generate(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/sdapi/v1/{endpoint}``, which must answer 200; its JSON."""
        response = self.client.post(f"/sdapi/v1/{endpoint}", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())


@contextmanager
def serve_subprocess(
    models: Path, log_path: Path, *extra: str, ready: bool = True, ready_timeout: float = 120.0
) -> Iterator[RunningServer]:
    """``python -m inference_api serve`` as a child process: the real entry point, on a free loopback port."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "inference_api", "serve", "--models", str(models), "--port", str(port)]
    cmd += ["--threads", "1", "--log-level", "warning", *extra]  # a later --threads in extra wins
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=120)
    try:
        path = "/ready" if ready else "/health"
        wait_until(
            lambda: proc.poll() is not None or _get_ok(client, path), timeout=ready_timeout, what=f"{path} on {url}"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        yield RunningServer(url, client, log_path, pid=proc.pid)
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serve_in_thread(settings: Any, *, ready: bool = True) -> Iterator[RunningServer]:
    """The app under uvicorn in a thread of the test process (cheap: torch is imported once)."""
    import uvicorn

    from inference_api.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=120)
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn start")
        if not thread.is_alive():
            raise RuntimeError("server thread died during start")
        if ready:
            wait_until(lambda: _get_ok(client, "/ready"), what="/ready")
        yield RunningServer(url, client, app=config.app)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


def post_raw(url: str, path: str, body: dict[str, Any]) -> socket.socket:
    """Send a POST and return the open socket without reading the answer: closing it is a client that gave up."""
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock
