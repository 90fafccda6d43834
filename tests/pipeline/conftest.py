"""Fixtures for the pipeline: a moto account with the stack's migration resources, a stubbed ECS, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.pipeline.support import CONTAINER, LOG_PREFIX, REGION, FakeClock, MigrationStack

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region, so no test can reach a real account or read the user's config."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def stubbed_ecs(aws_env: None) -> Iterator[tuple[ECSClient, Stubber]]:
    """An ECS client whose answers a test gives (botocore's Stubber, checked against ECS's API model); all used."""
    client = boto3.client("ecs", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def migration_stack(moto_aws: None) -> MigrationStack:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    # moto's awsvpc tasks need DNS hostnames on the VPC: without them RunTask fails with
    # AttributeError: 'NetworkInterface' object has no attribute 'private_dns_name' (moto 5.x).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]
        ["SubnetId"]
        for i, az in enumerate("ab")
    ]
    group = ec2.create_security_group(GroupName="migration", Description="migration job", VpcId=vpc)["GroupId"]
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/lifeguard/migration")
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = ecs.create_cluster(clusterName="migration-cluster")["cluster"]["clusterArn"]
    task_definition = ecs.register_task_definition(
        family="migration-dev",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{
            "name": CONTAINER,
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/migrator:abc",
            "essential": True,
            # moto needs container-level memory; real Fargate takes the task's.
            "memory": 512,
            "secrets": [{"name": "DATABASE_URL_UNPOOLED",
                         "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:direct-AbCdEf"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/lifeguard/migration", "awslogs-region": REGION,
                "awslogs-stream-prefix": LOG_PREFIX}},
        }],
    )["taskDefinition"]["taskDefinitionArn"]
    return MigrationStack(outputs={
        "migrationClusterArn": cluster,
        "migrationTaskDefinitionArn": task_definition,
        "migrationContainerName": CONTAINER,
        "migrationSubnetIds": subnets,
        "migrationSecurityGroupIds": [group],
        "migrationLogGroupName": "/lifeguard/migration",
        "migrationLogStreamPrefix": LOG_PREFIX,
        "readInvoicesFunctionName": "lifeguard-dev-read-invoices",
        "chargeCreditsFunctionName": "lifeguard-dev-charge-credits",
        # Others the pipeline does not read, as the real stack has them.
        "pooledSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pooled-AbCdEf",
        "poolerEndpoint": "[secret]",
    })
