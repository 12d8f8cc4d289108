"""boto3 clients, created on first use and reused while the Lambda environment stays warm.

This is the only module-level cache in the package. It is keyed by everything that decides where a
client talks to (service, region, endpoint override), so a changed environment gets new clients.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

# Lambda's own timeout bounds the request; keep AWS calls well inside API Gateway's 29 s.
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})


def client(service: str) -> Any:
    """A shared client for ``service`` in the current region, honouring ``AWS_ENDPOINT_URL`` (moto, local)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(service, region, os.environ.get("AWS_ENDPOINT_URL"))


class LazyClient:
    """Stands for ``client(service)`` and creates it on first use: a request refused before any AWS call
    (a 400) pays for no client, which is most of a cold start's first-request time."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)


@lru_cache(maxsize=16)
def _client(service: str, region: str | None, endpoint: str | None) -> Any:
    config = _CONFIG
    if service == "s3":
        # Presigned URLs must be SigV4; virtual-host addressing does not resolve against a local endpoint.
        style = "path" if endpoint else "auto"
        config = config.merge(Config(signature_version="s3v4", s3={"addressing_style": style}))
    return _session().client(service, region_name=region, endpoint_url=endpoint, config=config)


@lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    # One session for every client: it loads the endpoint and partition data once instead of per client.
    # (Sessions are not thread-safe; Lambda and the local gateway run one invocation at a time.)
    return boto3.session.Session()
