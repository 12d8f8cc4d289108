"""The stack's webhook signing secret: one Secrets Manager secret, read by every runtime's queue agent.

The secret's value is 40 random letters and digits (valid base64 as they are); receivers verify with
``whsec_<value>`` (contract/webhooks.py ``secret_from_stored``), which the ``WebhookSecretCommand`` output prints.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import checkov, nag

SECRET_LENGTH = 40

ROTATION_REASON = (
    "Receivers verify webhooks with this secret: an automatic rotation would make them reject every delivery "
    "until they were given the new value. Rotate deliberately: `aws secretsmanager put-secret-value` with a new "
    "40-character letters-and-digits value, restart the runtimes' agents (they read the secret at start), then "
    "hand receivers the new WebhookSecretCommand output."
)


class WebhookSecret(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stack_name: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description=f"{stack_name}: signs task webhooks (Standard Webhooks); receivers verify with whsec_<value>",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=SECRET_LENGTH, exclude_punctuation=True, include_space=False
            ),
        )
        nag.acknowledge(self.secret, {"AwsSolutions-SMG4": ROTATION_REASON})
        checkov.skip(
            self.secret,
            {
                "CKV_AWS_149": "Encrypted with the AWS-managed aws/secretsmanager key: only this stack's runtime "
                "roles may read the secret (GetSecretValue on it alone), so a customer key would add key-policy "
                "grants and no control.",
            },
        )

    @property
    def arn(self) -> str:
        return self.secret.secret_arn

    def read_statement(self) -> iam.PolicyStatement:
        """What a runtime's agent needs: the secret's value, of this secret only."""
        return iam.PolicyStatement(
            sid="ReadWebhookSecret", actions=["secretsmanager:GetSecretValue"], resources=[self.arn]
        )

    def command(self) -> str:
        """A shell command printing the secret the way receivers use it (``whsec_<value>``)."""
        return (
            f"echo whsec_$(aws secretsmanager get-secret-value --secret-id {self.arn} "
            f"--query SecretString --output text --region {Aws.REGION})"
        )
