"""``sdq local up`` in the foreground: it records how to reach it, serves sdq, and SIGTERM stops everything."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sdq.cli import EXIT_API
from sdq.cli import main as sdq_main

ROOT = Path(__file__).resolve().parents[2]


def _live_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (
                    marker.encode() in (entry / "environ").read_bytes()
                    and (entry / "stat").read_text().split()[2] != "Z"
                ):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_local_up_serves_until_sigterm(tmp_path: Path):
    marker = uuid.uuid4().hex
    # MODEL_DIR: the user's way to point the stack at models; here the tiny model cached by the other e2e tests.
    env = {**os.environ, "SDQ_UP_TEST_MARKER": marker, "MODEL_DIR": str(ROOT / ".local-stack" / "models")}
    env["PYTHONPATH"] = str(ROOT)  # run from another folder, like a user would
    argv = [sys.executable, "-m", "sdq.cli", "local", "up", "--config", str(ROOT / "config.yaml"), "--quiet"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    local_file = tmp_path / ".sdq" / "local.json"
    try:
        deadline = time.monotonic() + 180
        while not local_file.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "sdq local up did not come up"
            time.sleep(0.2)
        info = json.loads(local_file.read_text())
        assert set(info) >= {"endpoint", "api_key", "runtimes"}
        assert info["runtimes"] == ["sdruntime"]
        assert oct(local_file.stat().st_mode & 0o777) == "0o600"

        # sdq finds the stack through the file: an unknown task is a clean 404 from the real API.
        err = io.StringIO()
        code = sdq_main(["status", "no-such-task", "--local-file", str(local_file)], out=io.StringIO(), err=err)
        assert code == EXIT_API and "HTTP 404" in err.getvalue()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, output
    assert "API key" in output and info["api_key"] in output
    assert not local_file.exists(), "a stale local.json would point sdq at a dead port"
    assert _live_with(marker) == [], "sdq local up left processes behind"
