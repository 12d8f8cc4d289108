"""Delete-time step of the stack: remove Karpenter's capacity before Karpenter itself is uninstalled.

A custom resource (infra/karpenter_cleanup.py) that Karpenter's Helm release outlives. On stack deletion it
deletes every NodePool, then reports incomplete until no NodeClaim is left: Karpenter drains and terminates
the nodes of each deleted NodePool, so when this resource is gone no GPU instance, ENI or launch template is
left for `cdk destroy` to trip over. Create and Update do nothing.

Standard library and the runtime's boto3 only: the Kubernetes API is reached over HTTPS with an EKS token (a
presigned STS GetCallerIdentity URL, as `aws eks get-token` makes), under an access entry whose group may only
list and delete NodePools and list NodeClaims.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"
NODECLAIMS = "/apis/karpenter.sh/v1/nodeclaims"
TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (the token format's prefix, not a secret)
_CLUSTER_HEADER = "x-k8s-aws-id"


class KubeApiError(RuntimeError):
    pass


@dataclass(frozen=True)
class KubeApi:
    """The few Kubernetes API calls the cleanup makes."""

    endpoint: str
    token: str
    context: ssl.SSLContext | None = None

    def _call(self, method: str, path: str) -> dict[str, Any] | None:
        if not self.endpoint.startswith(("https://", "http://")):
            raise KubeApiError(f"not an HTTP(S) API endpoint: {self.endpoint!r}")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above; the endpoint comes from EKS)
            self.endpoint.rstrip("/") + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:  # noqa: S310 (as above)
                body: dict[str, Any] = json.loads(response.read() or b"{}")
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None  # no such object, or the Karpenter CRDs are already gone
            raise KubeApiError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def names(self, collection: str) -> list[str]:
        found = self._call("GET", collection)
        return [item["metadata"]["name"] for item in (found or {}).get("items", [])]

    def delete(self, collection: str, name: str) -> None:
        self._call("DELETE", f"{collection}/{name}")


def eks_token(cluster_name: str, region: str, session: boto3.session.Session | None = None) -> str:
    """A bearer token for the EKS API: a presigned STS GetCallerIdentity URL bound to the cluster name."""
    session = session or boto3.session.Session()
    sts = session.client("sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com")

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[_CLUSTER_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def cluster_api(cluster_name: str, region: str) -> KubeApi | None:
    """The cluster's API, or None where the cluster no longer exists (nothing left to clean)."""
    eks = boto3.client("eks", region_name=region)
    try:
        cluster = eks.describe_cluster(name=cluster_name)["cluster"]
    except eks.exceptions.ResourceNotFoundException:
        return None
    ca = base64.b64decode(cluster["certificateAuthority"]["data"]).decode()
    return KubeApi(cluster["endpoint"], eks_token(cluster_name, region), ssl.create_default_context(cadata=ca))


def start_cleanup(api: KubeApi | None) -> list[str]:
    """Delete every NodePool; Karpenter then drains and terminates their nodes. Returns the deleted names."""
    if api is None:
        return []
    pools = api.names(NODEPOOLS)
    for name in pools:
        api.delete(NODEPOOLS, name)
    return pools


def remaining_capacity(api: KubeApi | None) -> list[str]:
    """NodeClaims still present (each is an instance Karpenter has yet to terminate)."""
    return [] if api is None else api.names(NODECLAIMS)


def _api(event: dict[str, Any]) -> KubeApi | None:
    props = event["ResourceProperties"]
    return cluster_api(props["ClusterName"], props["Region"])


def on_event(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId") or f"karpenter-cleanup-{event['ResourceProperties']['ClusterName']}"
    if event["RequestType"] == "Delete":
        deleted = start_cleanup(_api(event))
        LOG.info("deleted NodePools: %s", ", ".join(deleted) or "none")
    return {"PhysicalResourceId": physical_id}


def is_complete(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    if event["RequestType"] != "Delete":
        return {"IsComplete": True}
    api = _api(event)
    # A NodePool created after the first pass (a release applied late) is deleted too.
    start_cleanup(api)
    claims = remaining_capacity(api)
    if claims:
        LOG.info("waiting for %d NodeClaim(s) to terminate: %s", len(claims), ", ".join(claims))
    return {"IsComplete": not claims}
