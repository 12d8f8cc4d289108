"""The API surface as API Gateway declares it: one place for the CDK stack, the local gateway and the OpenAPI
document. Resource templates use API Gateway's ``{param}`` syntax."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiRoute:
    method: str
    resource: str
    function: str  # which Lambda serves it: "submit", "status" or "cancel"


API_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("POST", "/v1alpha2", "submit"),
    ApiRoute("POST", "/v1alpha1", "submit"),
    ApiRoute("POST", "/tasks", "submit"),
    ApiRoute("GET", "/tasks/{id}", "status"),
    ApiRoute("DELETE", "/tasks/{id}", "cancel"),
)

# Handler entry points, per function and for a single function serving every route.
FUNCTION_HANDLERS: dict[str, str] = {
    "submit": "task_api.submit.handler",
    "status": "task_api.status.handler",
    "cancel": "task_api.cancel.handler",
}
ALL_ROUTES_HANDLER = "task_api.app.handler"
