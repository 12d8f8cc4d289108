"""The output bucket (images and .out files) and the bucket that receives its access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import checkov, nag
from infra.config import OutputsConfig


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: OutputsConfig) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        nag.acknowledge(
            self.access_logs,
            {"AwsSolutions-S1": "This bucket is the access-log destination; logging it into itself would recurse."},
        )
        checkov.skip(
            self.access_logs,
            {
                "CKV_AWS_18": "This bucket is the access-log destination; logging it into itself would recurse.",
                "CKV_AWS_21": "Access logs are written once and expire after 90 days; versions would only keep "
                "deleted logs longer.",
            },
        )
        rules = [
            s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(7)),
            # Results expire with their status records (outputs.statusTtlDays unless expireAfterDays is shorter).
            s3.LifecycleRule(id="ResultsExpireWithRecords", expiration=Duration.days(config.output_expiry_days)),
        ]
        self.output_bucket = s3.Bucket(
            self,
            "Outputs",
            # SSE-S3 rather than SSE-KMS: presigned GET URLs handed to clients then need no KMS grant.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="outputs/",
            lifecycle_rules=rules,
            # Generated images are the product: keep them when the stack goes away.
            removal_policy=RemovalPolicy.RETAIN,
        )
        checkov.skip(
            self.output_bucket,
            {
                "CKV_AWS_21": "Each result is written once under its task's own key and expires with its status "
                "record; versioning would keep expired images and never restore anything.",
            },
        )
