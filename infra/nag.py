"""cdk-nag (v3, CDK policy validation): enabling the AwsSolutions pack and acknowledging findings with reasons."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, App, CfnElement, Stack, Validations
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def enable(app: App) -> None:
    # The acknowledgments are also written into the template metadata, where auditors look for them.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))


def acknowledge(construct: IConstruct, reasons: dict[str, str]) -> None:
    """Acknowledge findings on ``construct`` and below; every id carries the reason it is acceptable.

    Ids are a rule (``AwsSolutions-S1``) or one finding of a rule (``AwsSolutions-IAM5[Resource::*]``).
    """
    if reasons:
        Validations.of(construct).acknowledge(
            *(Acknowledgment(id=rule, reason=reason) for rule, reason in reasons.items())
        )


# cdk-nag v3 reports wildcard and managed-policy findings one by one, and each needs its own acknowledgment.
# These build the finding ids the way cdk-nag renders them (tokens as <LogicalId.Attr>).


def managed_policy(name: str) -> str:
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


def wildcard_resource(resource: str) -> str:
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def wildcard_action(action: str) -> str:
    return f"AwsSolutions-IAM5[Action::{action}]"


def token(construct: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag prints a reference to ``construct``'s CloudFormation resource (or one of its attributes)."""
    element = construct.node.default_child or construct
    assert isinstance(element, CfnElement), f"{construct.node.path} has no CloudFormation resource"
    logical_id = Stack.of(construct).resolve(element.logical_id)
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"


def same_reason(reason: str, *finding_ids: str) -> dict[str, str]:
    return dict.fromkeys(finding_ids, reason)


def render(stack: Stack, value: str) -> str:
    """A (possibly tokenised) string the way cdk-nag prints it: Ref -> <Name>, GetAtt -> <Id.Attr>, joins inlined."""
    return _render(stack.resolve(value))


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if key == "Fn::Join":
            return arg[0].join(_render(part) for part in arg[1])
    raise ValueError(f"cannot render {node!r} as a cdk-nag finding")


def wildcard_findings(stack: Stack, statements: Iterable[iam.PolicyStatement]) -> list[str]:
    """The IAM5 finding ids cdk-nag raises for these statements (wildcards in actions or resources)."""
    found: dict[str, None] = {}
    for statement in statements:
        for action in statement.actions:
            if "*" in action:
                found[wildcard_action(action)] = None
        for resource in statement.resources:
            rendered = render(stack, resource)
            if "*" in rendered:
                found[wildcard_resource(rendered)] = None
    return list(found)
