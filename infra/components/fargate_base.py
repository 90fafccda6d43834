"""What every Fargate workload of the stack needs before its task definition: its image in ECR, a
cluster, a log group, and an execution role that may pull that image, write those logs and read
exactly the secrets the task injects. The pooler and the migration job both build on it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra import policies
from infra.components.image import ContainerImage, ContainerImageArgs
from infra.types import Architecture


@dataclass(frozen=True)
class FargateBase:
    image: ContainerImage
    cluster: aws.ecs.Cluster
    logs: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    execution_policy: aws.iam.RolePolicy


def fargate_base(
    name: str,
    *,
    context_dir: Path,
    architecture: Architecture,
    shared_packages: tuple[Path, ...] = (),
    account: policies.Account,
    production: bool,
    log_retention_days: int,
    role_description: str,
    secrets: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> FargateBase:
    """Create the resources as children of ``opts.parent``; ``secrets`` maps a policy statement id
    to the one secret ARN it may read (one statement per secret)."""
    image = ContainerImage(
        f"{name}-image",
        ContainerImageArgs(
            context_dir=context_dir, architecture=architecture, force_delete=not production,
            shared_packages=shared_packages,
        ),
        opts=opts,
    )
    cluster = aws.ecs.Cluster(
        f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], opts=opts
    )
    logs = aws.cloudwatch.LogGroup(f"{name}-logs", retention_in_days=log_retention_days, opts=opts)
    execution_role = aws.iam.Role(
        f"{name}-execution",
        description=role_description,
        assume_role_policy=json.dumps(
            policies.assume_role("ecs-tasks.amazonaws.com", account, account.ecs_source_arn())
        ),
        opts=opts,
    )
    statement_ids = list(secrets)
    execution_policy = aws.iam.RolePolicy(
        f"{name}-execution",
        role=execution_role.id,
        policy=pulumi.Output.all(image.repository_arn, logs.arn, *secrets.values()).apply(
            lambda arns: json.dumps(
                policies.task_execution(arns[0], arns[1], dict(zip(statement_ids, arns[2:], strict=True)))
            )
        ),
        opts=opts,
    )
    return FargateBase(image, cluster, logs, execution_role, execution_policy)
