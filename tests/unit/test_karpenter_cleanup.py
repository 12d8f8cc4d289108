"""The delete-time Karpenter cleanup handler (lambda/karpenter_cleanup), against a small Kubernetes API server.

The server speaks the few Karpenter endpoints the handler calls over real HTTP, and behaves like Karpenter: a
deleted NodePool's NodeClaims terminate one per observation, so the handler must keep reporting incomplete
until the last one is gone. EKS is the moto server; the EKS token is signed by real botocore.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from karpenter_cleanup import handler

from local_stack.moto_server import MotoServer
from tests.loopback import QuietHandler, serve_on_loopback

TOKEN = "k8s-aws-v1.test"


class FakeKarpenter:
    def __init__(self, pools: dict[str, list[str]]) -> None:
        self.pools = dict(pools)
        self.claims = {claim: pool for pool, claims in pools.items() for claim in claims}
        self.terminating: list[str] = []
        self.unauthorised = 0
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if token != TOKEN:
                self.unauthorised += 1
                return 401, {"kind": "Status", "code": 401}
            if method == "GET" and path == handler.NODEPOOLS:
                return 200, {"items": [{"metadata": {"name": n}} for n in self.pools]}
            if method == "DELETE" and path.startswith(handler.NODEPOOLS + "/"):
                name = path.rsplit("/", 1)[1]
                if self.pools.pop(name, None) is None:
                    return 404, {"kind": "Status", "code": 404}
                self.terminating += [c for c, pool in self.claims.items() if pool == name]
                return 200, {"kind": "Status", "status": "Success"}
            if method == "GET" and path == handler.NODECLAIMS:
                items = [{"metadata": {"name": c}} for c in self.claims]
                if self.terminating:  # Karpenter makes progress between observations
                    self.claims.pop(self.terminating.pop(0))
                return 200, {"items": items}
            return 404, {"kind": "Status", "code": 404}


@pytest.fixture
def karpenter() -> Iterator[tuple[FakeKarpenter, str]]:
    fake = FakeKarpenter({"default-fast": ["fast-a", "fast-b"], "webui-webui": ["webui-a"]})

    class Handler(QuietHandler):
        def _serve(self) -> None:
            auth = self.headers.get("Authorization", "")
            status, body = fake.handle(
                self.command, urllib.parse.urlsplit(self.path).path, auth.removeprefix("Bearer ")
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_DELETE = _serve

    with serve_on_loopback(Handler) as url:
        yield fake, url


def _event(request_type: str) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "PhysicalResourceId": "karpenter-cleanup-sdtwo-cluster",
        "ResourceProperties": {"ClusterName": "sdtwo-cluster", "Region": "us-east-1"},
    }


def test_delete_removes_every_node_pool_and_waits_for_the_last_node_claim(
    karpenter: tuple[FakeKarpenter, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, endpoint = karpenter
    monkeypatch.setattr(handler, "cluster_api", lambda name, region: handler.KubeApi(endpoint, TOKEN))
    assert handler.on_event(_event("Delete")) == {"PhysicalResourceId": "karpenter-cleanup-sdtwo-cluster"}
    assert fake.pools == {}
    answers = [handler.is_complete(_event("Delete"))["IsComplete"] for _ in range(5)]
    # Three claims terminate one per observation: incomplete until none is listed any more.
    assert answers == [False, False, False, True, True]
    assert fake.claims == {} and fake.unauthorised == 0


def test_create_and_update_touch_nothing(karpenter: tuple[FakeKarpenter, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, endpoint = karpenter
    monkeypatch.setattr(handler, "cluster_api", lambda name, region: handler.KubeApi(endpoint, TOKEN))
    for request_type in ("Create", "Update"):
        handler.on_event(_event(request_type))
        assert handler.is_complete(_event(request_type)) == {"IsComplete": True}
    assert set(fake.pools) == {"default-fast", "webui-webui"} and len(fake.claims) == 3


def test_an_api_error_fails_the_step_rather_than_pretending(karpenter: tuple[FakeKarpenter, str]) -> None:
    _, endpoint = karpenter
    with pytest.raises(handler.KubeApiError, match="HTTP 401"):
        handler.start_cleanup(handler.KubeApi(endpoint, "k8s-aws-v1.wrong"))
    with pytest.raises(handler.KubeApiError, match="not an HTTP"):
        handler.remaining_capacity(handler.KubeApi("file:///etc/passwd", TOKEN))


def test_a_cluster_that_is_already_gone_has_nothing_to_clean(aws_env: MotoServer) -> None:
    assert handler.cluster_api("no-such-cluster", "us-east-1") is None
    assert handler.on_event(_event("Delete"))["PhysicalResourceId"]
    assert handler.is_complete(_event("Delete")) == {"IsComplete": True}


def test_eks_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() -> None:
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    token = handler.eks_token("sdtwo-cluster", "eu-west-1", session)
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert parts.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    # The cluster-name header is part of the signature, so the token is valid for this cluster only.
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["60"]
