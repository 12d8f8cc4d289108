"""The sdq CLI against a scripted API (httpx MockTransport); tests/e2e drives it against the real local stack."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sdq.cli import EXIT_API, EXIT_OK, EXIT_TASK_FAILED, EXIT_TIMEOUT, EXIT_USAGE, main
from sdq.client import Endpoint, build_request
from sdq.endpoints import read_local, resolve, write_local
from sdq.progress import Progress
from tests.conftest import ROOT

API = "http://api.test"
KEY = "secret-key-123"
PNG = b"\x89PNG\r\n\x1a\nfake"


class FakeApi:
    """Answers like the task API; each task advances one state per GET: queued, running, then ``final``."""

    def __init__(self, final: str = "completed") -> None:
        self.final = final
        self.tasks: dict[str, dict] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "s3.test":
            return httpx.Response(200, content=PNG)
        if request.headers.get("x-api-key") != KEY:
            return httpx.Response(403, json={"message": "Forbidden"})
        path = request.url.path
        if request.method == "POST" and path == "/tasks":
            body = json.loads(request.content)
            content = body["task"]["content"]
            if content.get("steps", 1) > 150:
                error = {
                    "code": "invalid_request",
                    "message": "1 invalid field(s)",
                    "fields": [
                        {"field": "task.content.steps", "rule": "range", "message": "must be between 1 and 150"}
                    ],
                }
                return httpx.Response(400, json={"error": error})
            task_id = body["task"]["metadata"].get("id", "generated-1")
            self.tasks[task_id] = {"id": task_id, "status": "queued", "polls": 0, "body": body}
            return httpx.Response(202, json={"id": task_id, "status": "queued", "runtime": "sdruntime"})
        task_id = path.rsplit("/", 1)[-1]
        task = self.tasks.get(task_id)
        if task is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no task", "fields": []}})
        if request.method == "DELETE":
            if task["status"] == "running":
                return httpx.Response(202, json={"id": task_id, "status": "running", "cancel_requested": True})
            task["status"] = "cancelled"
            return httpx.Response(200, json={"id": task_id, "status": "cancelled"})
        task["polls"] += 1
        task["status"] = ["queued", "running", self.final][min(task["polls"] - 1, 2)]
        record = {"id": task_id, "status": task["status"], "runtime": "sdruntime", "tasktype": "text-to-image"}
        if task["status"] == "completed":
            record["image_url"] = [f"s3://bucket/output/{task_id}/{task_id}-1.png"]
            record["images"] = [{"s3": record["image_url"][0], "url": f"https://s3.test/{task_id}-1.png?sig=x"}]
        if task["status"] == "failed":
            record["error"] = {"code": "runtime_rejected", "message": "bad sampler"}
        return httpx.Response(200, json=record)


def run(args: list[str], api: FakeApi, tmp_path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    local = tmp_path / "local.json"
    if not local.exists():
        write_local(local, Endpoint(API, KEY, ("sdruntime",)))
    code = main(
        [*args, "--local-file", str(local), "--interval", "0"]
        if args[0] in {"submit", "wait"}
        else [*args, "--local-file", str(local)],
        out=out,
        err=err,
        transport=httpx.MockTransport(api),
    )
    return code, out.getvalue(), err.getvalue()


def test_submit_sends_only_what_was_asked_and_prints_the_id(tmp_path: Path):
    api = FakeApi()
    code, out, _ = run(
        ["submit", "a red fox", "--steps", "5", "--size", "64x128", "--seed", "7", "--id", "t-1"], api, tmp_path
    )
    assert (code, out) == (EXIT_OK, "t-1\n")
    body = api.tasks["t-1"]["body"]
    assert body == {
        "task": {
            "metadata": {"runtime": "sdruntime", "tasktype": "text-to-image", "id": "t-1"},
            "content": {"prompt": "a red fox", "steps": 5, "width": 64, "height": 128, "seed": 7},
        }
    }


def test_submit_wait_download_fetches_the_images_without_sending_the_key_to_s3(tmp_path: Path):
    api = FakeApi()
    dest = tmp_path / "imgs"
    code, out, err = run(["submit", "a fox", "--id", "t-2", "--wait", "--download", str(dest)], api, tmp_path)
    assert code == EXIT_OK, err
    assert out.splitlines() == ["t-2", str(dest / "t-2-1.png")]
    assert (dest / "t-2-1.png").read_bytes() == PNG
    # Progress went to stderr, one line per state (not a terminal).
    assert [line.split(":")[1].split("(")[0].strip() for line in err.splitlines()] == ["queued", "running", "completed"]
    s3_requests = [r for r in api.requests if r.url.host == "s3.test"]
    assert s3_requests and all("x-api-key" not in r.headers for r in s3_requests)


def test_wait_prints_presigned_urls(tmp_path: Path):
    api = FakeApi()
    run(["submit", "x", "--id", "t-3"], api, tmp_path)
    code, out, _ = run(["wait", "t-3"], api, tmp_path)
    assert (code, out) == (EXIT_OK, "https://s3.test/t-3-1.png?sig=x\n")


def test_a_failed_task_exits_1_with_its_error(tmp_path: Path):
    api = FakeApi(final="failed")
    code, _, err = run(["submit", "x", "--id", "t-4", "--wait"], api, tmp_path)
    assert code == EXIT_TASK_FAILED
    assert "task t-4 failed: runtime_rejected: bad sampler" in err


def test_a_rejected_request_prints_every_field_and_exits_3(tmp_path: Path):
    code, _, err = run(["submit", "x", "--steps", "500"], FakeApi(), tmp_path)
    assert code == EXIT_API
    assert "HTTP 400 invalid_request" in err
    assert "task.content.steps: must be between 1 and 150 [range]" in err


def test_a_wrong_key_is_an_api_error_and_the_key_is_not_printed(tmp_path: Path):
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["status", "t", "--endpoint", API, "--api-key", "wrong-key-987"],
        out=out,
        err=err,
        transport=httpx.MockTransport(FakeApi()),
    )
    assert code == EXIT_API
    assert "HTTP 403" in err.getvalue() and "Forbidden" in err.getvalue()
    assert "wrong-key-987" not in err.getvalue() + out.getvalue()


def test_status_human_and_json(tmp_path: Path):
    api = FakeApi()
    run(["submit", "x", "--id", "t-5"], api, tmp_path)
    code, out, _ = run(["status", "t-5"], api, tmp_path)
    assert code == EXIT_OK
    assert "status       queued" in out
    code, out, _ = run(["status", "t-5", "--json"], api, tmp_path)
    assert json.loads(out)["status"] == "running"


def test_unknown_task_is_a_404_error(tmp_path: Path):
    code, _, err = run(["status", "nope"], FakeApi(), tmp_path)
    assert code == EXIT_API and "HTTP 404 not_found: no task" in err


def test_cancel(tmp_path: Path):
    api = FakeApi()
    run(["submit", "x", "--id", "t-6"], api, tmp_path)
    code, out, _ = run(["cancel", "t-6"], api, tmp_path)
    assert (code, out) == (EXIT_OK, "t-6: cancelled\n")
    assert api.requests[-1].method == "DELETE"


def test_cancel_of_a_running_task_says_it_was_requested(tmp_path: Path):
    api = FakeApi()
    run(["submit", "x", "--id", "t-8"], api, tmp_path)
    run(["status", "t-8"], api, tmp_path)
    run(["status", "t-8"], api, tmp_path)  # now running
    code, out, _ = run(["cancel", "t-8"], api, tmp_path)
    assert code == EXIT_OK
    assert out == "t-8: cancel requested (running; the runtime is being interrupted)\n"


def test_wait_times_out_with_exit_4(tmp_path: Path):
    api = FakeApi()
    run(["submit", "x", "--id", "t-7"], api, tmp_path)
    code, _, err = run(["wait", "t-7", "--timeout", "0"], api, tmp_path)
    assert code == EXIT_TIMEOUT and "still queued" in err


def test_no_endpoint_is_a_usage_error_that_says_what_to_do(tmp_path: Path):
    err = io.StringIO()
    code = main(["status", "x", "--local-file", str(tmp_path / "missing.json")], out=io.StringIO(), err=err)
    assert code == EXIT_USAGE
    assert "sdq local up" in err.getvalue() and "--endpoint" in err.getvalue()


def test_connection_refused_is_reported_cleanly(tmp_path: Path):
    from local_stack.ports import free_port

    err = io.StringIO()
    code = main(["status", "x", "--endpoint", f"http://127.0.0.1:{free_port()}"], out=io.StringIO(), err=err)
    assert code == EXIT_API and "cannot reach the API" in err.getvalue()


def test_bad_size_is_rejected_by_the_parser():
    with pytest.raises(SystemExit) as exc:
        main(["submit", "x", "--size", "big"], out=io.StringIO(), err=io.StringIO())
    assert exc.value.code == EXIT_USAGE


def test_local_file_is_private_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / ".sdq" / "local.json"
    write_local(path, Endpoint("http://127.0.0.1:1", "k1", ("a", "b")))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_local(path) == Endpoint("http://127.0.0.1:1", "k1", ("a", "b"))
    assert resolve(local_file=path).api_key == "k1"
    assert resolve(api_key="k2", local_file=path) == Endpoint("http://127.0.0.1:1", "k2", ("a", "b"))
    monkeypatch.setenv("SDQ_ENDPOINT", "http://env:1")
    assert resolve(local_file=path).url == "http://env:1"
    assert resolve(endpoint="http://flag:1", local_file=path).url == "http://flag:1"
    assert "k1" not in repr(read_local(path))


def test_stack_outputs_give_endpoint_and_key(aws_env):
    import boto3

    apigw = boto3.client("apigateway", region_name="us-east-1")
    key = apigw.create_api_key(name="sdq-test", enabled=True, value="the-real-key-value-0123456789")
    queues = "https://sqs.us-east-1.amazonaws.com/123456789012"
    # The outputs infra/stack.py declares.
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "ApiEndpoint": {"Value": "https://abc.execute-api.us-east-1.amazonaws.com/dev/"},
            "ApiKeyCommand": {
                "Value": f"aws apigateway get-api-key --api-key {key['id']} --include-value --query value --output text"
            },
            "QueueUrlSdruntime": {"Value": f"{queues}/sdasync-sdruntime-queue"},
            "DlqUrlSdruntime": {"Value": f"{queues}/sdasync-sdruntime-dlq"},
            "QueueUrlXlTurbo": {"Value": f"{queues}/sdasync-xl-turbo-queue"},
        },
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="sdasync", TemplateBody=json.dumps(template)
    )
    found = resolve(stack="sdasync", local_file=Path("/nonexistent"))
    assert found == Endpoint(
        "https://abc.execute-api.us-east-1.amazonaws.com/dev/",
        "the-real-key-value-0123456789",
        ("sdruntime", "xl-turbo"),
    )
    from sdq.endpoints import EndpointError

    with pytest.raises(EndpointError, match="cannot read stack nope"):
        resolve(stack="nope")


def test_stack_outputs_under_the_sample_names(aws_env):
    import boto3

    apigw = boto3.client("apigateway", region_name="us-east-1")
    key = apigw.create_api_key(name="sample-key", enabled=True, value="sample-key-value-0123456789abcdef")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "FrontApiEndpoint": {"Value": "https://abc.execute-api.us-east-1.amazonaws.com/dev"},
            "GetAPIKeyCommand": {
                "Value": f"aws apigateway get-api-keys --query 'items[?id==`{key['id']}`].value' --include-values "
                "--output text --region us-east-1"
            },
        },
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="sdoneks", TemplateBody=json.dumps(template)
    )
    found = resolve(stack="sdoneks", local_file=Path("/nonexistent"))
    assert found.url == "https://abc.execute-api.us-east-1.amazonaws.com/dev"
    assert found.api_key == "sample-key-value-0123456789abcdef"


def test_sdq_client_library_does_not_import_the_local_stack():
    # One-way: local_stack uses sdq's client; sdq's library (and the CLI, until `sdq local`) never loads local_stack.
    code = (
        "import sys, sdq.client, sdq.endpoints, sdq.results, sdq.cli; "
        "bad = sorted(m for m in sys.modules if m == 'local_stack' or m.startswith('local_stack.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_request_image_to_image():
    body = build_request("p", runtime="r", tasktype="image-to-image", init_image="s3://b/k.png", prefix="x/y")
    assert body["task"]["metadata"] == {"runtime": "r", "tasktype": "image-to-image", "prefix": "x/y"}
    assert body["task"]["content"] == {"prompt": "p", "init_images": ["s3://b/k.png"]}


def test_progress_bar_shapes():
    assert Progress.bar("queued", 3) == "[" + "." * 24 + "]"
    assert Progress.bar("completed", 3) == "[" + "#" * 24 + "]"
    frames = {Progress.bar("running", t) for t in range(50)}
    assert len(frames) > 10 and all(len(f) == 26 and "####" in f for f in frames)


def test_progress_on_a_terminal_redraws_one_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(stream, "t")
    progress.update({"status": "running"}, 1.0)
    progress.update({"status": "running"}, 2.0)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
