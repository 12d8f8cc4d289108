"""Process supervision of the local stack: prefixed logs, group stop, no orphans, clear start failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from local_stack.logs import LogSink
from local_stack.ports import free_port
from local_stack.processes import ManagedProcess, StartError, http_ok, stop_all


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def sink(tmp_path: Path):
    s = LogSink(tmp_path / "logs" / "stack.log")
    yield s
    s.close()


def test_output_lands_in_one_log_prefixed_with_the_component(sink: LogSink):
    proc = ManagedProcess("worker", _python("print('hello from worker', flush=True)"), dict(os.environ), sink).start()
    assert _wait_for(lambda: sink.tail("worker") == ["hello from worker"])
    proc.stop()
    lines = sink.path.read_text().splitlines()
    assert any(ln.endswith(" worker   | hello from worker") for ln in lines)
    assert sink.tail("worker") == ["hello from worker"]


def test_stop_ends_the_whole_process_group(sink: LogSink, tmp_path: Path):
    pidfile = tmp_path / "grandchild.pid"
    code = f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """
    proc = ManagedProcess("parent", _python(code), dict(os.environ), sink).start()
    assert _wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    proc.stop()
    assert not proc.running
    assert _wait_for(lambda: not _alive(grandchild))


def test_a_child_ignoring_sigterm_is_killed(sink: LogSink):
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(600)
    """
    proc = ManagedProcess("stubborn", _python(code), dict(os.environ), sink).start()
    assert _wait_for(lambda: sink.tail("stubborn") == ["ready"])
    proc.stop(timeout=0.5)
    assert proc.returncode == -9
    assert "ignored SIGTERM" in sink.path.read_text()


def test_a_component_that_dies_at_start_fails_fast_with_its_output(sink: LogSink):
    code = "import sys; print('config is broken: no model', flush=True); sys.exit(3)"
    proc = ManagedProcess("runtime", _python(code), dict(os.environ), sink).start()
    started = time.monotonic()
    with pytest.raises(StartError) as err:
        proc.wait_http(f"http://127.0.0.1:{free_port()}/ready", timeout=60)
    assert time.monotonic() - started < 30
    assert "exited with code 3" in str(err.value)
    assert "config is broken: no model" in str(err.value)


def test_wait_http_sees_a_server_come_up(sink: LogSink):
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    proc = ManagedProcess("web", argv, dict(os.environ), sink).start()
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/", timeout=30)
        assert http_ok(f"http://127.0.0.1:{port}/")
    finally:
        proc.stop()
    assert not http_ok(f"http://127.0.0.1:{port}/")


def test_children_die_with_a_killed_supervisor(tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    supervisor = f"""
        import os, sys, time
        from pathlib import Path
        from local_stack.logs import LogSink
        from local_stack.processes import ManagedProcess
        sink = LogSink(Path({str(tmp_path / "stack.log")!r}))
        argv = [sys.executable, "-c", "import time; time.sleep(600)"]
        child = ManagedProcess("sleeper", argv, dict(os.environ), sink).start()
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen(_python(supervisor), env=env)
    try:
        assert _wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", timeout=30)
        child = int(pidfile.read_text())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_for(lambda: not _alive(child))


def test_stop_all_sends_sigterm_once(sink: LogSink):
    # The queue agent reads a second SIGTERM as "abort the running job": a drain must get exactly one.
    # It keeps "draining" for 2 s after the first SIGTERM (any further SIGTERM would be printed), then
    # exits; the generous timeout means a loaded machine cannot turn a slow print into a SIGKILL.
    code = """
        import signal, time
        terms = []
        def on_term(signum, frame):
            terms.append(time.monotonic())
            print("TERM", flush=True)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        while not terms or time.monotonic() - terms[0] < 2:
            time.sleep(0.05)
    """
    proc = ManagedProcess("drainer", _python(code), dict(os.environ), sink).start()
    assert _wait_for(lambda: sink.tail("drainer") == ["ready"])
    stop_all([proc], timeout=60.0)
    assert sink.tail("drainer").count("TERM") == 1
