"""Where the API is and which key to use: flags, environment, a local stack's file, or CloudFormation outputs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from infra import naming
from sdq.client import Endpoint

LOCAL_FILE = Path(".sdq") / "local.json"
ENDPOINT_ENV = "SDQ_ENDPOINT"
API_KEY_ENV = "SDQ_API_KEY"
# Stack outputs, ours first, then the names the replaced sample's stacks (and scripts) use.
ENDPOINT_OUTPUTS = ("ApiEndpoint", "FrontApiEndpoint")
KEY_COMMAND_OUTPUTS = ("ApiKeyCommand", "GetAPIKeyCommand")


class EndpointError(RuntimeError):
    """The endpoint could not be determined; the message tells the user what to pass."""


def write_local(path: Path, endpoint: Endpoint, **extra: Any) -> None:
    """Record a running local stack for scripts and later ``sdq`` calls. Readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"endpoint": endpoint.url, "api_key": endpoint.api_key, "runtimes": list(endpoint.runtimes), **extra}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def read_local(path: Path) -> Endpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EndpointError(
            f"no endpoint given and no local stack found ({path} is missing): start one with `sdq local up`, "
            "or pass --endpoint/--api-key or --stack NAME"
        ) from None
    except ValueError as exc:
        raise EndpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("endpoint"), str):
        raise EndpointError(f"{path} has no 'endpoint' string")
    runtimes = data.get("runtimes")
    names = tuple(str(r) for r in runtimes) if isinstance(runtimes, list) else ()
    return Endpoint(data["endpoint"], data.get("api_key"), names)


def _pick_output(outputs: dict[str, str], *stems: str) -> str | None:
    """The first output named by one of ``stems`` (ours first, then the replaced sample's)."""
    # CDK suffixes output keys with a hash when they live in nested constructs ("ApiEndpoint4F160690").
    for stem in stems:
        for key in sorted(outputs):
            if key == stem or key.startswith(stem):
                return outputs[key]
    return None


def _api_key_id(outputs: dict[str, str]) -> str | None:
    """The key's id: an ``ApiKeyId`` output, or the id inside the ``ApiKeyCommand`` (the sample's
    ``GetAPIKeyCommand``) output."""
    key_id = _pick_output(outputs, "ApiKeyId")
    if key_id is None and (command := _pick_output(outputs, *KEY_COMMAND_OUTPUTS)) is not None:
        # Ours: "get-api-key --api-key ID ..."; a query form: "get-api-keys --query 'items[?id==`ID`].value' ...".
        match = re.search(r"--api-key\s+([A-Za-z0-9]+)", command) or re.search(
            r"id\s*==\s*[`'\"]?([A-Za-z0-9]+)", command
        )
        key_id = match.group(1) if match else None
    return key_id


def _runtimes(stack_name: str, outputs: dict[str, str]) -> tuple[str, ...]:
    """Runtime names, read back from the per-runtime ``QueueUrl*`` outputs (queue names come from infra.naming)."""
    names = []
    for key in sorted(outputs):
        if key.startswith("QueueUrl"):
            queue = outputs[key].rstrip("/").rsplit("/", 1)[-1]
            candidate = queue.removeprefix(f"{stack_name}-").removesuffix("-queue")
            if naming.runtime_queue(stack_name, candidate) == queue:
                names.append(candidate)
    return tuple(names)


def from_stack(stack_name: str, *, session: Any = None) -> Endpoint:
    """Read the endpoint and the API key id from a deployed stack's outputs (ours or the replaced sample's
    names: ``ApiEndpoint``/``FrontApiEndpoint``, ``ApiKeyCommand``/``GetAPIKeyCommand``); fetch the key."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.session.Session()
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        url = _pick_output(outputs, *ENDPOINT_OUTPUTS)
        if url is None:
            raise EndpointError(
                f"stack {stack_name} has no ApiEndpoint or FrontApiEndpoint output (outputs: {', '.join(outputs)})"
            )
        key_id = _api_key_id(outputs)
        key = None
        if key_id is not None:
            key = session.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
    except (BotoCoreError, ClientError) as exc:
        raise EndpointError(f"cannot read stack {stack_name}: {exc}") from None
    return Endpoint(url, key, _runtimes(stack_name, outputs))


def resolve(
    *,
    endpoint: str | None = None,
    api_key: str | None = None,
    stack: str | None = None,
    local_file: Path = LOCAL_FILE,
) -> Endpoint:
    """Flags win, then the environment, then ``--stack``, then the local stack's file."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    api_key = api_key or os.environ.get(API_KEY_ENV)
    if endpoint:
        return Endpoint(endpoint, api_key)
    if stack:
        found = from_stack(stack)
        return Endpoint(found.url, api_key or found.api_key, found.runtimes)
    found = read_local(local_file)
    return Endpoint(found.url, api_key or found.api_key, found.runtimes)


def local_webhook_secret(path: Path = LOCAL_FILE) -> str:
    """The running local stack's webhook secret (a deployed stack prints its own: output WebhookSecretCommand)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EndpointError(f"no local stack found ({path} is missing): start one with `sdq local up`") from None
    secret = data.get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        raise EndpointError(f"{path} holds no webhook_secret: restart the local stack with a current `sdq local up`")
    return secret
