"""checkov (make lint, scripts/checkov_lint.py) suppressions in the template, each beside its resource with a reason.

checkov reads ``Metadata.checkov.skip`` (``[{id, comment}]``) of each CloudFormation resource. ``skip`` adds to
that list on a construct's own resource, or on every resource of one type below a construct (for resources a
CDK library creates for itself). The reasons that recur for one kind of resource are named here once.
"""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct

# Recurring reasons, by kind of resource.
LOG_GROUP = {
    "CKV_AWS_158": "CloudWatch Logs encrypts every log group at rest; a customer key would add key-policy grants "
    "for the logs service and nothing the logs need (they carry ids and states, never prompts, keys or images).",
}
SYNC_FUNCTION = {
    "CKV_AWS_116": "Invoked synchronously (API Gateway, an SQS event source mapping, CloudFormation custom "
    "resources): a dead-letter queue only catches asynchronous invocations; the caller, or the queue's own retry, "
    "sees every failure.",
    "CKV_AWS_115": "Bounded by its caller (the API usage-plan throttle, the event source's batch concurrency, or one "
    "deployment at a time); reserved concurrency would only take capacity from the account pool.",
    "CKV_AWS_173": "The environment holds resource names and settings, no secrets; Lambda encrypts it at rest.",
}
OUTSIDE_VPC = {
    "CKV_AWS_117": "Calls AWS and EKS public endpoints only and reaches nothing inside the VPC; outside it there are "
    "no ENIs to wait for when the stack is deleted.",
}
LIBRARY_FUNCTION = {
    "CKV_AWS_115": "A function the CDK library creates for itself (custom-resource provider): its settings are "
    "the library's, and it runs only during deployments.",
    "CKV_AWS_116": "A CDK custom-resource provider function, invoked synchronously by CloudFormation.",
    "CKV_AWS_117": "A CDK custom-resource provider function calling AWS APIs only.",
    "CKV_AWS_173": "A CDK custom-resource provider function; its environment holds no secrets.",
}


def skip(construct: IConstruct, reasons: dict[str, str], *, resource_type: str | None = None) -> None:
    """Suppress checkov checks with their reasons.

    Without ``resource_type``: on the construct's own CloudFormation resource. With it: on every resource of that
    type at or below the construct.
    """
    if resource_type is None:
        target = construct if isinstance(construct, CfnResource) else construct.node.default_child
        assert isinstance(target, CfnResource), f"{construct.node.path} has no CloudFormation resource"
        targets = [target]
    else:
        targets = [
            c for c in construct.node.find_all() if isinstance(c, CfnResource) and c.cfn_resource_type == resource_type
        ]
        assert targets, f"no {resource_type} under {construct.node.path}"
    for target in targets:
        current = target.get_metadata("checkov") or {}
        entries = list(current.get("skip", []))
        known = {entry["id"] for entry in entries}
        entries += [{"id": check, "comment": reason} for check, reason in reasons.items() if check not in known]
        target.add_metadata("checkov", {"skip": entries})
