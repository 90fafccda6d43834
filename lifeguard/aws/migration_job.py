"""The migration job: a Fargate task definition the pipeline runs after ``pulumi up``.

It connects straight to RDS (the migration lock and session state do not survive a transaction pooler) as the
master user: ``DATABASE_URL_UNPOOLED``, injected by ECS. Before migrating it provisions the
application role the functions use, setting its password from the SCRAM verifier in the pooler's
secret (the ``password`` key, injected alone): the job never sees the functions' plain password.
Its execution role may read those two secrets and no other. The task has no task role: it needs
no AWS API at run time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from database_urls import DIRECT_URL_ENV
from lifeguard.aws import policies
from lifeguard.aws.config import ECR_IMAGE, InfraConfigError, MigrationConfig
from lifeguard.aws.fargate_base import FargateBase, fargate_base
from lifeguard.aws.image import ContainerImage, ContainerImageArgs
from lifeguard.aws.policies import Account
from migrator.contract import (
    APP_ROLE_ENV,
    APP_ROLE_VERIFIER_ENV,
    BASE_IMAGE_ARG,
    BOOKKEEPING_TABLES_ENV,
    CONTAINER_NAME,
    DEMO_DATA_ENV,
    wrapped_command,
)

# ECS injects one JSON key of a secret with valueFrom "<arn>:<key>::".
VERIFIER_KEY = "password"
LOG_STREAM_PREFIX = "migrate"
# Migrations get SIGTERM first; let a running statement finish or roll back cleanly.
STOP_TIMEOUT_S = 120


@dataclass(frozen=True)
class MigrationJobArgs:
    region: str
    account: Account
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_id: pulumi.Input[str]
    direct_secret_arn: pulumi.Output[str]
    app_role: str
    """The application role the job provisions (``LIFEGUARD_APP_ROLE``)."""
    app_role_verifier_secret_arn: pulumi.Output[str]
    """The pooler's credentials secret: its ``password`` key holds the role's SCRAM verifier."""
    settings: MigrationConfig
    context_dir: Path
    """The ``migrator/`` folder: build context of the image."""
    shared_packages: tuple[Path, ...]
    """Repository packages the migrator imports besides its own (``build_context.SHARED_PACKAGE_NAMES``),
    added under ``shared/``."""
    log_retention_days: int
    deletion_protection: bool
    """The stack's: a protected stack's image repository is not force-deleted."""
    cluster_depends_on: Sequence[pulumi.Resource] = ()
    """ECS's service-linked role when the stack creates it (``Pooler.ecs_service_linked_role``)."""


class MigrationJob(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]
    container_name: str = CONTAINER_NAME
    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    log_group_name: pulumi.Output[str]
    log_stream_prefix: str = LOG_STREAM_PREFIX
    execution_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: MigrationJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:migration:MigrationJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings

        base = fargate_base(
            name,
            region=args.region,
            context_dir=args.context_dir,
            shared_packages=args.shared_packages,
            architecture=cfg.architecture,
            account=args.account,
            deletion_protection=args.deletion_protection,
            log_retention_days=args.log_retention_days,
            role_description="Starts the migration task: pulls its image, writes its logs, reads DATABASE_URL_UNPOOLED "
                             "and the application role's SCRAM verifier",
            secrets={"ReadDirectDatabaseUrl": args.direct_secret_arn,
                     "ReadAppRoleVerifier": args.app_role_verifier_secret_arn},
            opts=child,
            cluster_depends_on=args.cluster_depends_on,
        )
        image, cluster, logs, execution_role = base.image, base.cluster, base.logs, base.execution_role
        environment = [
            {"name": APP_ROLE_ENV, "value": args.app_role},
            # Demo data stays out of production stacks.
            {"name": DEMO_DATA_ENV, "value": "1" if cfg.demo_data else "0"},
        ]
        if cfg.bookkeeping_tables:
            environment.append({"name": BOOKKEEPING_TABLES_ENV, "value": ",".join(cfg.bookkeeping_tables)})
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": _users_image(name, args, base, child) or image.image_uri,
            "essential": True,
            "environment": environment,
            "secrets": [
                {"name": DIRECT_URL_ENV, "valueFrom": args.direct_secret_arn},
                {"name": APP_ROLE_VERIFIER_ENV,
                 "valueFrom": pulumi.Output.concat(args.app_role_verifier_secret_arn, f":{VERIFIER_KEY}::")},
            ],
            # The migrator writes nothing: its bytecode is compiled into the image (and
            # PYTHONDONTWRITEBYTECODE is set), logs go to stderr, the CA bundle is baked in.
            "readonlyRootFilesystem": True,
            "stopTimeout": STOP_TIMEOUT_S,
            "logConfiguration": base.log_configuration(LOG_STREAM_PREFIX),
        }
        if cfg.command:
            # The user's tool behind the wrapper: guard, lock, role provisioning before and after.
            container["command"] = wrapped_command(list(cfg.command))
        task_definition = base.task_definition(
            cpu=cfg.cpu, memory_mb=cfg.memory_mb, containers=[container], opts=child
        )

        self.cluster_arn = cluster.arn
        self.task_definition_arn = task_definition.arn
        self.subnet_ids = pulumi.Output.from_input(args.subnet_ids).apply(lambda ids: [str(i) for i in ids])
        self.security_group_ids = pulumi.Output.from_input(args.security_group_id).apply(lambda sg: [sg])
        self.log_group_name = logs.name
        self.execution_role_arn = execution_role.arn
        self.register_outputs({
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.task_definition_arn,
            "logGroupName": self.log_group_name,
        })


def _users_image(name: str, args: MigrationJobArgs, base: FargateBase,
                 opts: pulumi.ResourceOptions) -> pulumi.Output[str] | str | None:
    """The user's migration image (``migrationImage``), which the task runs instead of ours; None: ours.

    A folder is built into a repository of its own, with ``LIFEGUARD_MIGRATOR_IMAGE`` (ours) as a
    build argument for a Dockerfile that starts ``FROM`` it, and our package staged under
    ``shared/`` for one that adds it to another base. Either way the execution role may pull that
    one repository too, in a policy of its own: nothing else about the role changes.
    """
    cfg = args.settings
    if cfg.image_folder is not None:
        users = ContainerImage(
            f"{name}-users-image",
            ContainerImageArgs(
                context_dir=cfg.image_folder, architecture=cfg.architecture,
                force_delete=not args.deletion_protection,
                shared_packages=(args.context_dir, *args.shared_packages),
                build_args={BASE_IMAGE_ARG: base.image.image_uri},
            ),
            opts=opts,
        )
        _allow_pull(name, base, users.repository_arn, opts)
        return users.image_uri
    if cfg.image_uri is not None:
        match = ECR_IMAGE.match(cfg.image_uri)
        assert match is not None  # checked when the config was read
        if (match["account"], match["region"]) != (args.account.account_id, args.region):
            raise InfraConfigError([
                f"lifeguard:migrationImage: {cfg.image_uri} is in account {match['account']}, region "
                f"{match['region']}; the stack runs in {args.account.account_id}, {args.region}: push the image "
                "to an ECR repository of this account and region"])
        arn = (f"arn:{args.account.partition}:ecr:{match['region']}:{match['account']}:repository/"
               f"{match['repository']}")
        _allow_pull(name, base, arn, opts)
        return cfg.image_uri
    return None


def _allow_pull(name: str, base: FargateBase, repository_arn: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
    aws.iam.RolePolicy(
        f"{name}-execution-users-image",
        role=base.execution_role.id,
        policy=pulumi.Output.from_input(repository_arn).apply(
            lambda arn: json.dumps(policies.document(policies.pull_image(arn)[1] | {"Sid": "EcrPullUsersImage"}))
        ),
        opts=opts,
    )
