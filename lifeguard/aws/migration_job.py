"""The migration job: a Fargate task definition the pipeline runs after ``pulumi up``.

It connects straight to the database (the migration lock and session state do not survive a transaction
pooler) as its owner: ``DATABASE_URL_UNPOOLED``, injected by ECS from the direct-URL secret, or, when the
stack does not hold the owner's password (an existing database, RDS's managed master secret), composed by
the migrator at run time from the owner secret's ``username`` and ``password`` (injected by ECS from the
secret's JSON keys) and the host, port and database in the environment. Before migrating it provisions
the application role the functions use, setting its password from the SCRAM verifier in the pooler's
secret (the ``password`` key, injected alone): the job never sees the functions' plain password. Its
execution role may read exactly those two secrets. With ``rotation_parameter_name`` the job also records,
after each successful run, the password rotation whose verifiers Postgres now holds, in an SSM parameter
the component creates; its task role may put exactly that parameter (docs/roles.md, "Rotating the
password"). Without it the task has no task role: it needs no AWS API at run time.

Public (``lifeguard.aws``): no ``from __future__ import annotations`` here, so Pulumi's component analyzer
reads the real annotations.
"""

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Required, TypedDict

import pulumi
import pulumi_aws as aws

from database_urls import DIRECT_URL_ENV
from lifeguard.aws import build_context, policies
from lifeguard.aws.config import ECR_IMAGE, migration_command_problem, migration_image
from lifeguard.aws.fargate_base import FargateBase, fargate_base
from lifeguard.aws.image import ContainerImage, ContainerImageArgs
from lifeguard.aws.keys import whole_default
from lifeguard.aws.secrets import MIGRATOR_RDS_CA_PATH
from lifeguard.aws.type_token import component_type
from lifeguard.aws.types import ARCHITECTURES, Architecture, ArgsError
from migrator.bookkeeping import parse_table
from migrator.contract import (
    APP_ROLE_B_VERIFIER_ENV,
    APP_ROLE_ENV,
    APP_ROLE_VERIFIER_ENV,
    BASE_IMAGE_ARG,
    BOOKKEEPING_TABLES_ENV,
    CONTAINER_NAME,
    DB_HOST_ENV,
    DB_NAME_ENV,
    DB_PORT_ENV,
    DB_ROOT_CERT_ENV,
    DEMO_DATA_ENV,
    OWNER_PASSWORD_ENV,
    OWNER_USERNAME_ENV,
    ROTATION_ENV,
    ROTATION_PARAMETER_ENV,
    wrapped_command,
)
from migrator.errors import MigratorConfigError
from pgbouncer.contract import ALTERNATE_PASSWORD_KEY

# ECS injects one JSON key of a secret with valueFrom "<arn>:<key>::".
VERIFIER_KEY = "password"
OWNER_USERNAME_KEY = "username"
OWNER_PASSWORD_KEY = "password"  # noqa: S105 (a JSON key's name)
LOG_STREAM_PREFIX = "migrate"
# Migrations get SIGTERM first; let a running statement finish or roll back cleanly.
STOP_TIMEOUT_S = 120
# The sample stack's defaults (lifeguard.aws.keys).
DEFAULT_CPU = whole_default("migrationCpu")
DEFAULT_MEMORY_MB = whole_default("migrationMemoryMb")
DEFAULT_LOG_RETENTION_DAYS = whole_default("logRetentionDays")
# SSM: letters, digits, _.- and / between levels; not starting with aws or ssm (any case, with or without /).
_SSM_NAME = re.compile(r"^(?!/?(?i:aws|ssm))/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class MigrationJobArgs(TypedDict, total=False):
    subnet_ids: Required[pulumi.Input[Sequence[pulumi.Input[str]]]]
    """The private subnets the task runs in."""
    security_group_id: Required[pulumi.Input[str]]
    """The task's security group: allowed to the database's port (``Database``'s ``client_security_group_ids``)."""
    app_role: Required[str]
    """The application role the job provisions (``LIFEGUARD_APP_ROLE``): the pooled URL's user."""
    app_role_verifier_secret_arn: Required[pulumi.Input[str]]
    """The pooler's credentials secret: its ``password`` key holds the role's SCRAM verifier."""
    app_role_alternate: bool
    """The secret also holds the second login role's verifier (``alternate_password``, a password rotation's
    other role, ``<app_role>_b``): the job provisions that role too. Default false."""
    rotation_parameter_name: str
    """An SSM parameter name (e.g. ``lifeguard.aws.naming.rotation_parameter_name``): the component creates it
    and each successful run writes ``rotation`` into it, so a program can check, before switching
    ``DATABASE_URL`` to a rotated role, that Postgres holds its password (docs/roles.md). Unset: no record."""
    rotation: int
    """With ``rotation_parameter_name``: the password rotation whose verifiers the pooler's secret holds
    (``AppRoleCredentials``' ``rotation``; default 0)."""
    switched: int
    """With ``rotation_parameter_name``: the rotation ``DATABASE_URL`` uses (default 0), the parameter's value
    when it is created (Postgres holds at least that one: a later run records more)."""
    direct_secret_arn: pulumi.Input[str]
    """The secret holding ``DATABASE_URL_UNPOOLED`` (a new instance with a generated password). Give this or
    ``owner_secret_arn``."""
    owner_secret_arn: pulumi.Input[str]
    """Instead of ``direct_secret_arn``: the database owner's secret (JSON ``username``/``password``, e.g.
    RDS's managed master user secret), read by the task at run time, with ``database_host``,
    ``database_port`` and ``db_name``."""
    database_host: pulumi.Input[str]
    """With ``owner_secret_arn``: the database's endpoint (``Database``'s ``address``)."""
    database_port: pulumi.Input[int]
    """With ``owner_secret_arn``: the database's port."""
    db_name: pulumi.Input[str]
    """With ``owner_secret_arn``: the database to migrate."""
    image: str
    """Your migration image instead of lifeguard's: a folder holding its ``Dockerfile`` (absolute, or relative
    to the working directory, the Pulumi project's folder; built with our image as the
    ``LIFEGUARD_MIGRATOR_IMAGE`` build argument and our package staged under ``shared/``), or an ECR image URI
    of this account and region (by digest or tag). It must run the migration wrapper."""
    command: Sequence[str]
    """Your migration command, run through the wrapper (``python3 -m migrator run -- COMMAND``: direct URL
    only, migration lock, application role); empty: the image's own command."""
    architecture: str
    """``x86_64`` (default) or ``arm64``: of the image and the task."""
    cpu: int
    """Fargate CPU units (default 256)."""
    memory_mb: int
    """Fargate memory in MiB (default 512)."""
    demo_data: bool
    """Apply the sample runner's demo-data migrations (default false)."""
    bookkeeping_tables: Sequence[str]
    """More migration-tool bookkeeping tables (``NAME`` or ``SCHEMA.NAME``) the application role gets no
    privilege on, besides the known tools'."""
    log_retention_days: int
    """Of the task's log group (default 30)."""
    deletion_protection: bool
    """A protected stack's image repositories are not force-deleted (default true)."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags for every taggable resource the component creates."""


class MigrationJob(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    """The ECS cluster ``ecs run-task`` starts the job in."""
    task_definition_arn: pulumi.Output[str]
    """The job's task definition (its current revision)."""
    subnet_ids: pulumi.Output[list[str]]
    """The task's ``awsvpcConfiguration`` subnets."""
    security_group_ids: pulumi.Output[list[str]]
    """The task's ``awsvpcConfiguration`` security groups."""
    log_group_name: pulumi.Output[str]
    """Where its logs go (streams ``migrate/<container>/<task id>``)."""
    execution_role_arn: pulumi.Output[str]
    """The role ``ecs:RunTask`` must be allowed to pass."""
    task_role_arn: pulumi.Output[Optional[str]]  # noqa: UP045 (the analyzer's only union)
    """With ``rotation_parameter_name``: the task's role (it may put that parameter); ``ecs:RunTask`` must be
    allowed to pass it too. Unset without it (no task role)."""

    # The pipeline's constants for running the task (not schema outputs: plain class values).
    container_name = CONTAINER_NAME
    log_stream_prefix = LOG_STREAM_PREFIX

    def __init__(self, name: str, args: MigrationJobArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:  # noqa: UP045 (the analyzer's only union)
        _check(args)
        region = aws.get_region().region
        caller = aws.get_caller_identity()
        account = policies.Account.from_caller_arn(caller.arn, caller.account_id, region)
        users_image = _users_image(args.get("image"), account)
        super().__init__(component_type(MigrationJob, "migration"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        architecture = _architecture(args)
        deletion_protection = args.get("deletion_protection", True)
        owner_secret = args.get("owner_secret_arn")
        secret_arn: pulumi.Input[str] = owner_secret if owner_secret is not None else args["direct_secret_arn"]
        tags = dict(args.get("tags", {})) or None
        context_dir = build_context.package_dir("migrator")
        shared_packages = build_context.shared_packages()

        base = fargate_base(
            name,
            region=region,
            context_dir=context_dir,
            shared_packages=shared_packages,
            architecture=architecture,
            account=account,
            deletion_protection=deletion_protection,
            log_retention_days=args.get("log_retention_days", DEFAULT_LOG_RETENTION_DAYS),
            role_description=(
                "Starts the migration task: pulls its image, writes its logs, reads "
                + ("the database owner's secret" if owner_secret is not None else "DATABASE_URL_UNPOOLED")
                + " and the application role's SCRAM verifier"),
            secrets={("ReadDatabaseOwnerSecret" if owner_secret is not None else "ReadDirectDatabaseUrl"): secret_arn,
                     "ReadAppRoleVerifier": args["app_role_verifier_secret_arn"]},
            opts=child,
            # ECS's service-linked role, when the stack creates it, goes in this component's depends_on.
            cluster_depends_on=_depends_on(opts),
            tags=tags,
        )
        environment: list[dict[str, Any]] = [
            {"name": APP_ROLE_ENV, "value": args["app_role"]},
            # Demo data stays out of production stacks.
            {"name": DEMO_DATA_ENV, "value": "1" if args.get("demo_data", False) else "0"},
        ]
        bookkeeping = list(args.get("bookkeeping_tables", ()))
        if bookkeeping:
            environment.append({"name": BOOKKEEPING_TABLES_ENV, "value": ",".join(bookkeeping)})
        verifier = {"name": APP_ROLE_VERIFIER_ENV,
                    "valueFrom": pulumi.Output.concat(args["app_role_verifier_secret_arn"], f":{VERIFIER_KEY}::")}
        verifiers = [verifier]
        if args.get("app_role_alternate", False):
            verifiers.append({"name": APP_ROLE_B_VERIFIER_ENV, "valueFrom": pulumi.Output.concat(
                args["app_role_verifier_secret_arn"], f":{ALTERNATE_PASSWORD_KEY}::")})
        if owner_secret is None:
            secrets = [{"name": DIRECT_URL_ENV, "valueFrom": secret_arn}, *verifiers]
        else:
            # The owner's password stays in its secret: ECS injects it into the task at start, the migrator
            # composes the URL (migrator.source.url_from_parts). Nothing of it is in the stack's state.
            secrets = [
                {"name": env, "valueFrom": pulumi.Output.concat(owner_secret, f":{key}::")}
                for env, key in ((OWNER_USERNAME_ENV, OWNER_USERNAME_KEY), (OWNER_PASSWORD_ENV, OWNER_PASSWORD_KEY))
            ]
            secrets += verifiers
            environment += [
                {"name": DB_HOST_ENV, "value": args["database_host"]},
                {"name": DB_PORT_ENV, "value": pulumi.Output.from_input(args["database_port"]).apply(str)},
                {"name": DB_NAME_ENV, "value": args["db_name"]},
                {"name": DB_ROOT_CERT_ENV, "value": MIGRATOR_RDS_CA_PATH},
            ]
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": _image_uri(name, users_image, base, account, context_dir, shared_packages, deletion_protection,
                                child),
            "essential": True,
            "environment": environment,
            "secrets": secrets,
            # The migrator writes nothing: its bytecode is compiled into the image (and
            # PYTHONDONTWRITEBYTECODE is set), logs go to stderr, the CA bundle is baked in.
            "readonlyRootFilesystem": True,
            "stopTimeout": STOP_TIMEOUT_S,
            "logConfiguration": base.log_configuration(LOG_STREAM_PREFIX),
        }
        task_role_arn = None
        parameter_name = args.get("rotation_parameter_name")
        if parameter_name is not None:
            rotation = args.get("rotation", 0)
            environment += [{"name": ROTATION_PARAMETER_ENV, "value": parameter_name},
                            {"name": ROTATION_ENV, "value": str(rotation)}]
            task_role_arn = _rotation_record(name, parameter_name, args.get("switched", 0), account, base, child).arn
        command = list(args.get("command", ()))
        if command:
            # The user's tool behind the wrapper: guard, lock, role provisioning before and after.
            container["command"] = wrapped_command(command)
        task_definition = base.task_definition(
            cpu=args.get("cpu", DEFAULT_CPU), memory_mb=args.get("memory_mb", DEFAULT_MEMORY_MB),
            containers=[container], opts=child, task_role_arn=task_role_arn,
        )

        self.cluster_arn = base.cluster.arn
        self.task_definition_arn = task_definition.arn
        self.subnet_ids = pulumi.Output.from_input(args["subnet_ids"]).apply(lambda ids: [str(i) for i in ids])
        self.security_group_ids = pulumi.Output.from_input(args["security_group_id"]).apply(lambda sg: [sg])
        self.log_group_name = base.logs.name
        self.execution_role_arn = base.execution_role.arn
        self.task_role_arn = pulumi.Output.from_input(task_role_arn)
        self.register_outputs({
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.task_definition_arn,
            "logGroupName": self.log_group_name,
        })


def _rotation_record(name: str, parameter_name: str, switched: int, account: policies.Account, base: FargateBase,
                     opts: pulumi.ResourceOptions) -> aws.iam.Role:
    """The parameter the task records the rotation in, and the task role that may put exactly that parameter.

    The value is the job's to write: Pulumi sets it once, at creation, to ``switched`` (what ``DATABASE_URL``
    already logs in with, so Postgres holds it) and never again (``ignore_changes``), or every ``up`` would
    claim a rotation no job has set.
    """
    parameter = aws.ssm.Parameter(
        f"{name}-rotation", name=parameter_name, type="String", value=str(switched),
        description="The password rotation whose verifiers Postgres holds: written by the migration job",
        tags=base.tags,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["value"])),
    )
    role = aws.iam.Role(
        f"{name}-task",
        description="The migration task: records the password rotation it set in Postgres, nothing else",
        assume_role_policy=json.dumps(
            policies.assume_role("ecs-tasks.amazonaws.com", account, account.ecs_source_arn())),
        tags=base.tags,
        opts=opts,
    )
    aws.iam.RolePolicy(
        f"{name}-task",
        role=role.id,
        policy=parameter.arn.apply(lambda arn: json.dumps(policies.put_parameter("RecordPasswordRotation", arn))),
        opts=opts,
    )
    return role


def _check(args: MigrationJobArgs) -> None:
    """Every argument, before anything is registered."""
    # Inputs may be Outputs (no truth value): only a missing or empty plain value is refused here.
    for field in ("subnet_ids", "security_group_id", "app_role", "app_role_verifier_secret_arn"):
        value = args.get(field)
        if value is None or value == "":
            raise ArgsError(field, "required")
    direct, owner = args.get("direct_secret_arn"), args.get("owner_secret_arn")
    if (direct is None) == (owner is None):
        raise ArgsError("owner_secret_arn", "give direct_secret_arn (a secret holding DATABASE_URL_UNPOOLED) or "
                                            "owner_secret_arn (the owner's JSON username/password secret, with "
                                            "database_host, database_port and db_name), exactly one")
    parts = ("database_host", "database_port", "db_name")
    if owner is not None:
        missing = [field for field in parts if args.get(field) is None]
        if missing:
            raise ArgsError(missing[0], f"{', '.join(missing)}: required with owner_secret_arn (the migrator "
                                        "composes the direct URL from them and the secret at run time)")
    else:
        given = [field for field in parts if field in args]
        if given:
            raise ArgsError(given[0], f"{', '.join(given)}: only with owner_secret_arn; direct_secret_arn's URL "
                                      "already names the database")
    parameter = args.get("rotation_parameter_name")
    if parameter is not None and not _SSM_NAME.match(parameter):
        raise ArgsError("rotation_parameter_name", f"must be an SSM parameter name (/a/b or a.b: letters, digits, "
                                                   f"'_', '.', '-', '/'), got {parameter!r}")
    rotation, switched = args.get("rotation", 0), args.get("switched", 0)
    for field, number in (("rotation", rotation), ("switched", switched)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ArgsError(field, f"must be a whole number, 0 or more, got {number!r}")
    if switched > rotation:
        raise ArgsError("switched", f"must not be above rotation ({rotation}), got {switched}")
    _architecture(args)
    problem = migration_command_problem(list(args.get("command", ())))
    if problem is not None:
        raise ArgsError("command", problem)
    for table in args.get("bookkeeping_tables", ()):
        try:
            parse_table(table, "bookkeeping_tables")
        except MigratorConfigError as exc:
            raise ArgsError("bookkeeping_tables", str(exc).split(": ", 1)[-1]) from None


def _architecture(args: MigrationJobArgs) -> Architecture:
    value = args.get("architecture", "x86_64")
    for architecture in ARCHITECTURES:
        if value == architecture:
            return architecture
    raise ArgsError("architecture", f"must be one of {', '.join(ARCHITECTURES)}, got {value!r}")


def _depends_on(opts: Optional[pulumi.ResourceOptions]) -> list[pulumi.Resource]:  # noqa: UP045
    depends = opts.depends_on if opts is not None else None
    if depends is None:
        return []
    items = depends if isinstance(depends, list) else [depends]
    return [item for item in items if isinstance(item, pulumi.Resource)]


def _users_image(image: str | None, account: policies.Account) -> Path | str | None:
    """``image`` checked: a folder holding a Dockerfile (absolute), an ECR URI of this account and region, or None."""
    value = (image or "").strip()
    if not value:
        return None
    try:
        found = migration_image(value, Path.cwd(), "the working directory")
    except ValueError as exc:
        raise ArgsError("image", str(exc)) from None
    if isinstance(found, str):
        match = ECR_IMAGE.match(found)
        assert match is not None  # what migration_image returns as a string
        if (match["account"], match["region"]) != (account.account_id, account.region):
            raise ArgsError("image", f"{value} is in account {match['account']}, region {match['region']}; the "
                                     f"stack runs in {account.account_id}, {account.region}: push the image to an "
                                     "ECR repository of this account and region")
    return found


def _image_uri(name: str, users: Path | str | None, base: FargateBase, account: policies.Account, context_dir: Path,
               shared_packages: tuple[Path, ...], deletion_protection: bool,
               opts: pulumi.ResourceOptions) -> pulumi.Output[str] | str:
    """The image the task runs: ours, or the user's (``image``).

    A folder is built into a repository of its own, with ``LIFEGUARD_MIGRATOR_IMAGE`` (ours) as a
    build argument for a Dockerfile that starts ``FROM`` it, and our package staged under
    ``shared/`` for one that adds it to another base. Either way the execution role may pull that
    one repository too, in a policy of its own: nothing else about the role changes.
    """
    if users is None:
        return base.image.image_uri
    if isinstance(users, Path):
        built = ContainerImage(
            f"{name}-users-image",
            ContainerImageArgs(
                context_dir=users, architecture=base.architecture, force_delete=not deletion_protection,
                shared_packages=(context_dir, *shared_packages),
                build_args={BASE_IMAGE_ARG: base.image.image_uri}, tags=base.tags,
            ),
            opts=opts,
        )
        _allow_pull(name, base, built.repository_arn, opts)
        return built.image_uri
    match = ECR_IMAGE.match(users)
    assert match is not None  # checked by _users_image
    arn = f"arn:{account.partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    _allow_pull(name, base, arn, opts)
    return users


def _allow_pull(name: str, base: FargateBase, repository_arn: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
    aws.iam.RolePolicy(
        f"{name}-execution-users-image",
        role=base.execution_role.id,
        policy=pulumi.Output.from_input(repository_arn).apply(
            lambda arn: json.dumps(policies.document(policies.pull_image(arn)[1] | {"Sid": "EcrPullUsersImage"}))
        ),
        opts=opts,
    )
