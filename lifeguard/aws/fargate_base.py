"""What every Fargate workload of the stack is made of: its image in ECR, a cluster, a log group, an
execution role that may pull that image, write those logs and read exactly the secrets the task
injects, and the task definition (Fargate, awsvpc, the image's architecture) whose containers log
to that group. The pooler and the migration job both build on it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from lifeguard.aws import policies
from lifeguard.aws.image import ECS_CPU_ARCHITECTURES, ContainerImage, ContainerImageArgs
from lifeguard.aws.naming import ECS_TASK_FAMILY, stack_name
from lifeguard.aws.types import Architecture


@dataclass(frozen=True)
class FargateBase:
    image: ContainerImage
    cluster: aws.ecs.Cluster
    logs: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    execution_policy: aws.iam.RolePolicy
    name: str
    region: str
    architecture: Architecture
    tags: Mapping[str, pulumi.Input[str]] | None = None
    """Of every taggable resource of the workload (none: as before tags existed)."""

    def log_configuration(self, stream_prefix: str) -> dict[str, Any]:
        """A container's ``logConfiguration``: awslogs into the workload's group, under ``stream_prefix``."""
        return {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": self.logs.name,
                "awslogs-region": self.region,
                "awslogs-stream-prefix": stream_prefix,
            },
        }

    def task_definition(
        self,
        *,
        cpu: int,
        memory_mb: int,
        containers: Sequence[Mapping[str, Any]],
        opts: pulumi.ResourceOptions,
        volumes: Sequence[aws.ecs.TaskDefinitionVolumeArgsDict] = (),
        task_role_arn: pulumi.Input[str] | None = None,
    ) -> aws.ecs.TaskDefinition:
        """The workload's Fargate task definition (``<name>-task``), run by its execution role; ``task_role_arn``:
        the role its code calls AWS as (none: it calls no AWS API)."""
        return aws.ecs.TaskDefinition(
            f"{self.name}-task",
            family=stack_name(ECS_TASK_FAMILY, self.name, region=self.region),
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(cpu),
            memory=str(memory_mb),
            runtime_platform={
                "operating_system_family": "LINUX",
                "cpu_architecture": ECS_CPU_ARCHITECTURES[self.architecture],
            },
            execution_role_arn=self.execution_role.arn,
            task_role_arn=task_role_arn,
            container_definitions=pulumi.Output.json_dumps([dict(container) for container in containers]),
            volumes=list(volumes) or None,
            tags=self.tags,
            opts=opts,
        )


def fargate_base(
    name: str,
    *,
    region: str,
    context_dir: Path,
    architecture: Architecture,
    shared_packages: tuple[Path, ...] = (),
    account: policies.Account,
    deletion_protection: bool,
    log_retention_days: int,
    role_description: str,
    secrets: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
    cluster_depends_on: Sequence[pulumi.Resource] = (),
    tags: Mapping[str, pulumi.Input[str]] | None = None,
) -> FargateBase:
    """Create the resources as children of ``opts.parent``; ``secrets`` maps a policy statement id
    to the one secret ARN it may read (one statement per secret). ``cluster_depends_on``: what must
    exist before the cluster (ECS's service-linked role in a new account: CreateCluster creates it
    too, and the stack's own create of it would then fail)."""
    image = ContainerImage(
        f"{name}-image",
        ContainerImageArgs(
            # With the stack's deletion protection off (the documented step before `pulumi destroy`), the
            # repository goes with its images: they are rebuilt from the repository on every `up`, and a
            # repository that refuses would stop the destroy after the database is gone.
            context_dir=context_dir, architecture=architecture, force_delete=not deletion_protection,
            shared_packages=shared_packages, tags=tags,
        ),
        opts=opts,
    )
    cluster = aws.ecs.Cluster(
        f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], tags=tags,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(cluster_depends_on))),
    )
    logs = aws.cloudwatch.LogGroup(f"{name}-logs", retention_in_days=log_retention_days, tags=tags, opts=opts)
    execution_role = aws.iam.Role(
        f"{name}-execution",
        description=role_description,
        assume_role_policy=json.dumps(
            policies.assume_role("ecs-tasks.amazonaws.com", account, account.ecs_source_arn())
        ),
        tags=tags,
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
    return FargateBase(image, cluster, logs, execution_role, execution_policy, name, region, architecture, tags)
