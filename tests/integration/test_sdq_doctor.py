"""`sdq doctor` against a moto server over real HTTP.

moto serves S3, EC2 instance types, IAM, CloudFormation, SQS and API Gateway; it lacks Service Quotas, so that
one call is answered by a botocore Stubber on a real client. The task API is an httpx MockTransport.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.stub import Stubber

from infra.config import DeploymentConfig, load_config
from local_stack.moto_server import MotoServer
from sdq import doctor, endpoints
from sdq.cli import EXIT_TASK_FAILED, main

BUCKET = "doctor-models"
KEY = "doctor-key-value-0123456789"
STACK = "sddoc"


def _safetensors(payload: bytes = b"\0" * 64) -> bytes:
    header = json.dumps({"w": {"dtype": "F16", "shape": [32], "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


@pytest.fixture
def config(tmp_path: Path) -> DeploymentConfig:
    data = {
        "stackName": STACK,
        "modelBucketArn": f"arn:aws:s3:::{BUCKET}",
        "modelsRuntime": [
            {
                "name": "sdruntime",
                "type": "diffusers",
                "modelFilename": "sd_xl_base_1.0.safetensors",
                "extraValues": {
                    "runtime": {"scaling": {"maxReplicaCount": 5}},
                    "karpenter": {"provisioner": {"instanceType": ["g6.2xlarge", "g5.2xlarge"]}},
                },
            },
            {"name": "folder", "type": "diffusers", "modelFilename": "models/sdxl-turbo"},
            {"name": "webui", "type": "sdwebui", "modelFilename": "v1-5.bin"},
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _quotas(session: boto3.session.Session, values: dict[str, float]) -> Any:
    client = session.client("service-quotas")
    stubber = Stubber(client)
    for capacity, code in doctor.G_VT_QUOTAS.items():
        if capacity in values:
            stubber.add_response(
                "get_service_quota",
                {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": values[capacity]}},
                {"ServiceCode": "ec2", "QuotaCode": code},
            )
    stubber.activate()
    return client


@pytest.fixture
def session(aws_env: MotoServer) -> Iterator[boto3.session.Session]:
    yield boto3.session.Session()


def _by_check(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {f.check: f for f in findings}


def _deploy(session: boto3.session.Session, *, dead_letters: int = 0) -> str:
    """A stand-in for the deployed stack: its queues and the outputs sdq reads, plus the API key."""
    sqs = session.client("sqs")
    queue = sqs.create_queue(QueueName=f"{STACK}-sdruntime-queue")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{STACK}-sdruntime-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    for _ in range(dead_letters):
        sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    key_id = session.client("apigateway").create_api_key(name="doctor", enabled=True, value=KEY)["id"]
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "ApiEndpoint": {"Value": "https://api.test/dev/"},
            "ApiKeyCommand": {"Value": f"aws apigateway get-api-key --api-key {key_id} --include-value"},
            "QueueUrlSdruntime": {"Value": queue},
            "DlqUrlSdruntime": {"Value": dlq},
        },
    }
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return dlq


def _api(request: httpx.Request) -> httpx.Response:
    if request.headers.get("x-api-key") != KEY:
        return httpx.Response(403, json={"message": "Forbidden"})
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "no task", "fields": []}})


def _run(config: DeploymentConfig, session: boto3.session.Session, quotas: dict[str, float]) -> list[doctor.Finding]:
    aws = doctor.Aws(session)
    aws._clients["service-quotas"] = _quotas(session, quotas)
    return doctor.run(
        config,
        aws,
        stack_name=STACK,
        endpoint_of=lambda name: endpoints.from_stack(name, session=session),
        transport=httpx.MockTransport(_api),
    )


def test_a_fresh_account_fails_with_the_fix_for_each_problem(
    config: DeploymentConfig, session: boto3.session.Session
) -> None:
    session.client("s3").create_bucket(Bucket=BUCKET)
    findings = _by_check(_run(config, session, {"spot": 0, "on-demand": 0}))
    model = findings["model sdruntime"]
    assert model.status == "fail" and "not found" in model.message and "aws s3 cp" in model.fix
    assert findings["model folder"].status == "fail"
    assert findings["quota spot G/VT"].status == "fail" and "L-3819A6DF" in findings["quota spot G/VT"].fix
    # sdruntime: 5 replicas x 8 vCPUs; the other two keep the chart default of 20 replicas: 40 + 2 x 160.
    assert "--desired-value 360" in findings["quota on-demand G/VT"].fix
    spot = findings["spot service-linked role"]
    assert spot.status == "fail" and "createSpotServiceLinkedRole: true" in spot.fix
    assert findings["stack"].status == "warn" and "not deployed" in findings["stack"].message


def test_a_ready_account_and_stack_pass(config: DeploymentConfig, session: boto3.session.Session) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="sd_xl_base_1.0.safetensors", Body=_safetensors())
    s3.put_object(Bucket=BUCKET, Key="models/sdxl-turbo/model_index.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="v1-5.bin", Body=b"pickle")
    session.client("iam").create_role(
        RoleName=doctor.SPOT_ROLE, Path="/aws-service-role/spot.amazonaws.com/", AssumeRolePolicyDocument="{}"
    )
    dlq = _deploy(session, dead_letters=2)
    findings = _run(config, session, {"spot": 400, "on-demand": 360})
    checks = _by_check(findings)
    assert checks["model sdruntime"].status == "ok" and "GB" in checks["model sdruntime"].message
    assert checks["model folder"].status == "ok" and "diffusers folder" in checks["model folder"].message
    # A pickled .bin is not a format the runtime loads.
    assert checks["model webui"].status == "fail" and ".safetensors" in checks["model webui"].fix
    assert checks["quota spot G/VT"].status == "ok" and checks["quota on-demand G/VT"].status == "ok"
    assert checks["spot service-linked role"].status == "ok"
    assert checks[f"queue {STACK}-sdruntime-queue"].message == "1 waiting, 0 in flight"
    dead = checks[f"dead letters {STACK}-sdruntime-dlq"]
    assert dead.status == "warn" and "2 waiting" in dead.message and dlq in dead.fix
    assert checks["endpoint"].status == "ok"


def test_short_quota_warns_and_a_wrong_key_fails(config: DeploymentConfig, session: boto3.session.Session) -> None:
    session.client("s3").create_bucket(Bucket=BUCKET)
    _deploy(session)
    findings = _by_check(_run(config, session, {"spot": 16, "on-demand": 0}))
    # 16 vCPUs: two of five replicas on spot; on-demand has none, but spot still launches nodes.
    assert findings["quota spot G/VT"].status == "warn"
    assert findings["quota on-demand G/VT"].status == "warn"
    wrong = doctor.check_endpoint(endpoints.Endpoint("https://api.test/dev/", "wrong"), httpx.MockTransport(_api))
    assert wrong.status == "fail" and "403" in wrong.message


def test_a_corrupt_safetensors_file_fails(config: DeploymentConfig, session: boto3.session.Session) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="sd_xl_base_1.0.safetensors", Body=b"<html>AccessDenied</html>" * 4)
    (model,) = [f for f in doctor.check_models(config, doctor.Aws(session)) if f.check == "model sdruntime"]
    assert model.status == "fail" and "not a safetensors file" in model.message


def test_role_flag_on_with_an_existing_role_fails_before_deploy(
    config: DeploymentConfig, session: boto3.session.Session
) -> None:
    session.client("iam").create_role(RoleName=doctor.SPOT_ROLE, AssumeRolePolicyDocument="{}")
    flagged = config.model_copy(update={"create_spot_service_linked_role": True})
    finding = doctor.check_spot_role(flagged, doctor.Aws(session), stack_exists=False)
    assert finding.status == "fail" and "createSpotServiceLinkedRole: false" in finding.fix
    assert doctor.check_spot_role(flagged, doctor.Aws(session), stack_exists=True).status == "ok"


def test_cli_exits_non_zero_on_a_fail(config: DeploymentConfig, session: boto3.session.Session, tmp_path: Path) -> None:
    session.client("s3").create_bucket(Bucket=BUCKET)
    out = io.StringIO()
    code = main(["doctor", "--config", str(tmp_path / "config.yaml")], out=out)
    text = out.getvalue()
    assert code == EXIT_TASK_FAILED
    assert "[fail] model sdruntime" in text and "fix: upload it" in text
    # moto has no Service Quotas: the check says it could not read them instead of crashing the report.
    assert "[warn] quota spot G/VT: cannot read quota" in text
    assert text.rstrip().splitlines()[-1].endswith("fail")
