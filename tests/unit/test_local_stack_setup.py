"""The supervisor's decisions that need no running component: config errors, skipped runtimes, child env."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import yaml

from local_stack.__main__ import main as local_main
from local_stack.processes import StartError
from local_stack.stack import SOURCE_ROOT, LocalStack, StackOptions


def _config(tmp_path: Path, runtimes: list[dict]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"stackName": "t", "modelBucketArn": "arn:aws:s3:::m-b", "modelsRuntime": runtimes}))
    return path


def test_a_bad_config_names_the_key_and_exits_2(tmp_path: Path):
    path = _config(tmp_path, [{"name": "Bad_Name!", "type": "diffusers"}])
    err = io.StringIO()
    with redirect_stderr(err):
        code = local_main(["demo", "--config", str(path)])
    assert code == 2
    assert "modelsRuntime[0].name" in err.getvalue()


def test_only_comfyui_runtimes_cannot_run_locally(tmp_path: Path):
    path = _config(tmp_path, [{"name": "comfy", "type": "comfyui"}])
    stack = LocalStack(StackOptions(config_path=path, workdir=tmp_path / "w"))
    with pytest.raises(StartError, match="no sdwebui or diffusers runtime"):
        stack.up()
    log = (tmp_path / "w" / "logs" / "stack.log").read_text()
    assert "skipping runtime 'comfy'" in log
    assert stack.slots == [] and not stack._up


def test_a_missing_model_dir_is_a_clear_start_error(tmp_path: Path):
    path = _config(tmp_path, [{"name": "sd", "type": "sdwebui"}])
    stack = LocalStack(StackOptions(config_path=path, workdir=tmp_path / "w", model_dir=tmp_path / "nope"))
    with pytest.raises(StartError, match=r"model directory .*nope does not exist"):
        stack.up()


def test_children_see_moto_and_none_of_the_users_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALREALREAL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.amazonaws.com")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    stack = LocalStack(StackOptions(workdir=tmp_path, extra_env={"agent": {"PREFETCH": "2"}}))
    stack._moto_port = 4566
    env = stack._child_env("agent", RUNTIME_NAME="sd")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in env and "AWS_ENDPOINT_URL_S3" not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [str(SOURCE_ROOT), "/elsewhere"]
    assert (env["RUNTIME_NAME"], env["PREFETCH"]) == ("sd", "2")
    assert "PREFETCH" not in stack._child_env("runtime")


def test_describe_and_page_url_carry_what_clients_need(tmp_path: Path):
    stack = LocalStack(StackOptions(workdir=tmp_path))
    stack._api_port, stack._moto_port = 8123, 4566
    assert stack.page_url.startswith("http://127.0.0.1:8123/#key=")
    assert stack.api_key in stack.page_url
    assert stack.describe()["endpoint"] == "http://127.0.0.1:8123"
    # Each stack gets its own key.
    assert LocalStack().api_key != stack.api_key


def test_example_prompts_come_from_the_served_models_defaults(tmp_path: Path):
    import json

    from inference_api.model_defaults import DEFAULTS_FILE
    from local_stack.models import example_prompts

    for name, prompts in (
        ("a", ["a red circle", "a blue star"]),
        ("b", ["a blue star", "a green square"]),
        ("c", None),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
        if prompts is not None:
            defaults = {"width": 32, "height": 32, "steps": 20, "cfg_scale": 5.0, "example_prompts": prompts}
            (folder / DEFAULTS_FILE).write_text(json.dumps(defaults))
    # Each prompt once, in folder order; a model without defaults (a real checkpoint) suggests nothing.
    assert example_prompts(tmp_path) == ["a red circle", "a blue star", "a green square"]
    assert example_prompts(tmp_path / "c") == []
