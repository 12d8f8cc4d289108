"""VPC: public and private subnets, one NAT by default, an S3 gateway endpoint and flow logs."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import checkov
from infra.config import NetworkConfig


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: NetworkConfig, discovery_tag: str) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            # Environment-agnostic synth resolves AZs with Fn::GetAZs, which CDK limits to two.
            max_azs=2,
            # One NAT is the sample's cost choice: GPU nodes pull images and models through it (S3 goes
            # through the gateway endpoint below, which is free and does not touch the NAT).
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                # Karpenter may launch many GPU nodes at once; a /19 per AZ leaves room for their pod IPs.
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19),
            ],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        checkov.skip(flow_log_group, checkov.LOG_GROUP)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        # The CDK's provider that strips the default security group's rules (a stack-level singleton).
        restrictor = Stack.of(self).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        if restrictor is not None:
            checkov.skip(restrictor, checkov.LIBRARY_FUNCTION, resource_type="AWS::Lambda::Function")
        # Karpenter's EC2NodeClass selects the subnets nodes launch into by this tag.
        for subnet in self.vpc.private_subnets:
            Tags.of(subnet).add("karpenter.sh/discovery", discovery_tag)
