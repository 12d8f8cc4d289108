"""``make demo``'s entry, twice in a row: both runs work, nothing is left running, no port clash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image

from local_stack.processes import http_ok

ROOT = Path(__file__).resolve().parents[2]


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (every child of the demo inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().split()[2] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)  # two full stack lifecycles on a shared 2-core machine
def test_demo_runs_twice_and_cleans_up(tmp_path: Path):
    outputs = tmp_path / "outputs"
    for attempt in (1, 2):
        marker = f"SDQ_DEMO_TEST_MARKER={uuid.uuid4().hex}"
        key, value = marker.split("=", 1)
        env = {**os.environ, key: value}
        argv = [sys.executable, "-m", "local_stack", "demo", "--config", str(ROOT / "config.yaml")]
        argv += ["--outputs", str(outputs), "--size", "64", "--steps", "2", "--model", "tiny"]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout}\n{done.stderr}"
        assert "4/4 completed" in done.stdout
        for label in ("text-to-image, seed 1", "text-to-image, seed 2", "image-to-image", "extra-single-image"):
            assert re.search(rf"^{re.escape(label)}.*completed", done.stdout, re.MULTILINE), done.stdout
        assert _processes_with(marker) == [], f"run {attempt} left processes behind"
        log = (ROOT / ".local-stack" / "logs" / "stack.log").read_text()
        ports = {int(p) for p in re.findall(r"(?:-p|--port) (\d+)", log)}
        assert ports, log[-2000:]
        assert not any(http_ok(f"http://127.0.0.1:{port}/") for port in ports), "a port is still served"
    images = sorted(outputs.glob("*.png"))
    assert len(images) == 8, images  # four per run, none overwritten
    for path in images:
        with Image.open(path) as image:
            image.load()
