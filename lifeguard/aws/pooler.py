"""PgBouncer on Fargate behind an internal NLB, with its own credentials secret and a metrics sidecar.

The PgBouncer configuration is the renderer's (``pgbouncer.settings``), passed to the image as
JSON; only credentials and PgBouncer's TLS key come from Secrets Manager, injected by ECS (``secrets``, never
``environment``) through an execution role that may read the pooler's three secrets and nothing
else: the database login, the read-only console user of the metrics sidecar, and the TLS key of
the certificate the stack's CA issues for the NLB's name (:mod:`lifeguard.aws.pooler_tls`).

The sidecar (``python -m pgbouncer.metrics``, same image) reads PgBouncer's admin console over
its Unix socket, which lives in a task volume both containers mount at the image's socket
directory, and prints CloudWatch EMF lines to its awslogs stream; the stack's alarms read them.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Required, TypedDict

import pulumi
import pulumi_aws as aws

from lifeguard.aws.build_context import package_dir
from lifeguard.aws.component_args import whole_number
from lifeguard.aws.config import InfraConfigError, PoolerConfig, pooler_config
from lifeguard.aws.fargate_base import fargate_base
from lifeguard.aws.keys import KEYS_BY_NAME, WholeKey
from lifeguard.aws.naming import metrics_service_name, secret_name_prefix
from lifeguard.aws.policies import Account
from lifeguard.aws.pooler_tls import PoolerCertificate, PoolerCertificateArgs
from lifeguard.aws.secrets import DEFAULT_RECOVERY_WINDOW_DAYS, RECOVERY_WINDOWS, generated_password, stored_secret
from lifeguard.aws.type_token import component_type
from pgbouncer.contract import (
    ALTERNATE_PASSWORD_KEY,
    ALTERNATE_USERNAME_KEY,
    CERT_ENV,
    CONTAINER_NAME,
    CREDENTIALS_ENV,
    DEFAULT_NAMESPACE,
    IMAGE_RUN_DIR,
    IMAGE_SOCKET_DIR,
    KEY_ENV,
    LISTEN_PORT,
    METRICS_CONTAINER_NAME,
    METRICS_CREDENTIALS_ENV,
    METRICS_NAMESPACE_ENV,
    METRICS_SERVICE_ENV,
    RUN_VOLUME,
    SETTINGS_ENV,
    SOCKET_VOLUME,
    STATS_CREDENTIALS_ENV,
    STATS_USER,
)

CONTAINER_PORT = LISTEN_PORT
# Not read by the image: the two secrets' version ids, so that a new password changes the task
# definition and ECS rolls the tasks (the definition names the secrets by ARN, which stays the same).
CREDENTIALS_VERSION_ENV = "LIFEGUARD_CREDENTIALS_VERSIONS"
LOG_STREAM_PREFIX = "pgbouncer"
METRICS_LOG_STREAM_PREFIX = "metrics"
METRICS_COMMAND = ["python", "-m", "pgbouncer.metrics"]
# A soft limit: the sidecar is one Python process holding a sample at a time.
METRICS_MEMORY_RESERVATION_MB = 64
ECS_SERVICE_PRINCIPAL = "ecs.amazonaws.com"
# The metrics dimension and namespace go into the dashboard's SEARCH expressions unquoted.
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/#:]{1,255}$")


class PoolerArgs(TypedDict, total=False):
    vpc_id: Required[pulumi.Input[str]]
    """The VPC of the pooler's target group: `Network.vpc_id`."""
    subnet_ids: Required[pulumi.Input[Sequence[pulumi.Input[str]]]]
    """Private subnets in two or more AZs, for the NLB and the PgBouncer tasks."""
    load_balancer_security_group_id: Required[pulumi.Input[str]]
    """The NLB's security group (clients in, PgBouncer tasks out)."""
    task_security_group_id: Required[pulumi.Input[str]]
    """The PgBouncer tasks' security group (the NLB in, the database and the AWS APIs out)."""
    database_address: Required[pulumi.Input[str]]
    """The database's endpoint name: PgBouncer verifies the server certificate against it (verify-full)."""
    database_port: pulumi.Input[int]
    """The database's port (`Database.port`: an existing database's need not be 5432); default 5432."""
    db_name: Required[str]
    """The database clients connect to (the only one PgBouncer serves)."""
    max_connections: Required[int]
    """The database's `max_connections`: the pool budget each task's `default_pool_size` comes from."""
    username: Required[pulumi.Input[str]]
    """The application role: the only user clients log in as (so the pool sizing holds)."""
    verifier: Required[pulumi.Input[str]]
    """The role's SCRAM verifier (a secret; never the password): PgBouncer's auth_file holds only this."""
    ca_cert_pem: Required[pulumi.Input[str]]
    """The CA PgBouncer's certificate chains to: `PoolerCertificateAuthority.cert_pem`."""
    ca_private_key_pem: Required[pulumi.Input[str]]
    """That CA's key (a secret), which signs PgBouncer's certificate: `PoolerCertificateAuthority.private_key_pem`."""
    reserved_connections: int
    """Connections of `max_connections` kept out of the pool (superuser and RDS's own; default 5)."""
    migration_headroom: int
    """Connections kept for the migration job's direct session (default 2)."""
    min_tasks: int
    """PgBouncer tasks always running, at least 2 (default 2)."""
    max_tasks: int
    """The autoscaler's ceiling (default 4); the pool is sized so this many tasks fit max_connections."""
    deployment_maximum_percent: int
    """ECS's surge during a deployment, 100 to 200 (default 200): the pool budget counts those tasks too."""
    cpu: int
    """Each task's CPU units, at most 1024: PgBouncer is one single-threaded process (default 512)."""
    memory_mb: int
    """Each task's memory, a Fargate size for `cpu` (default 1024)."""
    cpu_target_percent: int
    """The autoscaler's CPU target, 10 to 90 (default 60)."""
    max_client_conn: int
    """Client connections each task accepts (default 10000)."""
    query_wait_timeout_seconds: int
    """Seconds a client waits for a server connection before PgBouncer fails it (default 20; below your timeout)."""
    stop_timeout_seconds: int
    """How long a stopping task lets transactions finish, 2 to 120 (default 120)."""
    deregistration_delay_seconds: int
    """The NLB's deregistration delay before a task stops (default 30)."""
    architecture: str
    """`x86_64` (default) or `arm64`: the image's and the tasks' CPU architecture."""
    image_context: str
    """The folder the image is built from; default the installed `pgbouncer` package's folder."""
    secret_name_prefix: str
    """Prefix of the secrets' names; default `<project>-<stack>-<digest>/` (unique per stack and region)."""
    secret_recovery_window_days: int
    """Days a deleted secret stays recoverable: 0 (deleted at once) or 7 to 30 (default 30)."""
    log_retention_days: int
    """Days the tasks' logs are kept, one of CloudWatch's values (default 30)."""
    deletion_protection: bool
    """AWS deletion protection and Pulumi `protect` on the NLB; also keeps the image repository (default true)."""
    metrics_service: str
    """The sidecar's `Service` dimension the alarms read; default `<project>-<stack>-pgbouncer-<digest>`."""
    metrics_namespace: str
    """The sidecar's CloudWatch namespace (default `Lifeguard/PgBouncer`)."""
    create_ecs_service_linked_role: bool
    """Create ECS's `AWSServiceRoleForECS` first (a brand-new account); default: when the account has none."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags for every taggable resource of the pooler."""
    alternate_username: str
    """The second login role a password rotation switches `DATABASE_URL` to (docs/roles.md), if any."""
    alternate_verifier: pulumi.Input[str]
    """Its SCRAM verifier (a secret), in the pooler's secret beside the first role's; with `alternate_username`."""


# Each sizing field and the config key (lifeguard.aws.keys) whose default, bounds and checks it shares with
# the sample stack's config: one set of rules, reported here under the field's name.
_SIZING_KEYS: Mapping[str, str] = {
    "db_name": "dbName",
    "max_connections": "maxConnections",
    "reserved_connections": "reservedConnections",
    "migration_headroom": "migrationHeadroom",
    "min_tasks": "poolerMinTasks",
    "max_tasks": "poolerMaxTasks",
    "deployment_maximum_percent": "deploymentMaximumPercent",
    "cpu": "poolerCpu",
    "memory_mb": "poolerMemoryMb",
    "cpu_target_percent": "poolerCpuTargetPercent",
    "max_client_conn": "maxClientConn",
    "query_wait_timeout_seconds": "queryWaitTimeoutSeconds",
    "stop_timeout_seconds": "poolerStopTimeoutSeconds",
    "deregistration_delay_seconds": "deregistrationDelaySeconds",
    "architecture": "containerArchitecture",
    "log_retention_days": "logRetentionDays",
}
_TEXT_FIELDS = frozenset({"db_name", "architecture"})


class PoolerArgsError(ValueError):
    """A PoolerArgs field is invalid; the message names each field to change."""


def sizing(args: Mapping[str, Any]) -> PoolerConfig:
    """The pool's sizing and PgBouncer settings from the args, by the sample stack's rules
    (:func:`lifeguard.aws.config.pooler_config`), every problem named by its PoolerArgs field."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field, key in _SIZING_KEYS.items():
        if field not in args or args[field] is None:
            continue
        value = args[field]
        if field in _TEXT_FIELDS:
            if not isinstance(value, str):
                problems.append(f"{field} must be a string, got {value!r}")
            values[key] = value
            continue
        try:
            values[key] = whole_number(value, field)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise PoolerArgsError("PoolerArgs: " + "; ".join(problems))
    try:
        return pooler_config(values)
    except InfraConfigError as exc:
        raise PoolerArgsError("PoolerArgs: " + "; ".join(_by_field(problem) for problem in exc.problems)) from None


def _by_field(problem: str) -> str:
    """A config problem (``lifeguard:poolerMinTasks: must be ...``) in the args' words (``min_tasks: ...``)."""
    text = problem.removeprefix("lifeguard:")
    for field, key in _SIZING_KEYS.items():
        text = re.sub(rf"\b{key}\b", field, text)
    return text


def _default(key: str) -> int:
    spec = KEYS_BY_NAME[key]
    assert isinstance(spec, WholeKey) and isinstance(spec.default, int), key
    return spec.default


def _account(parent: pulumi.Resource) -> Account:
    """The account, partition and region of the AWS provider the component's children use."""
    region = aws.get_region(opts=pulumi.InvokeOptions(parent=parent)).region
    caller = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=parent))
    return Account.from_caller_arn(caller.arn, caller.account_id, region)


def ecs_service_linked_role_exists(parent: pulumi.Resource | None = None) -> bool:
    """Whether the account has ECS's service-linked role (``AWSServiceRoleForECS``); a new account may not.

    The plural lookup answers an empty list rather than failing when there is none.
    """
    found = aws.iam.get_roles(
        name_regex="^AWSServiceRoleForECS$", path_prefix=f"/aws-service-role/{ECS_SERVICE_PRINCIPAL}/",
        opts=pulumi.InvokeOptions(parent=parent) if parent is not None else None,
    )
    return bool(found.names)


class Pooler(pulumi.ComponentResource):
    """PgBouncer (transaction mode) on ECS Fargate behind an internal NLB (port 6432), TLS, autoscaled, with metrics."""

    endpoint: pulumi.Output[str]
    """The NLB's DNS name: the pooled URL's host (port 6432)."""
    certificate_expiry: pulumi.Output[str]
    """When the certificate PgBouncer serves expires (a `pulumi up` in the last 30 days renews it)."""
    credentials_secret_arn: pulumi.Output[str]
    """The application role's SCRAM verifier, as PgBouncer reads it; the migration job sets the same one."""
    stats_credentials_secret_arn: pulumi.Output[str]
    """The metrics sidecar's console login (`stats_users`); read by the pooler tasks only."""
    cluster_name: pulumi.Output[str]
    """The ECS cluster (CloudWatch's `ClusterName`)."""
    service_name: pulumi.Output[str]
    """The ECS service (CloudWatch's `ServiceName`)."""
    task_definition_arn: pulumi.Output[str]
    """The revision the service is asked to run; the pipeline checks the service settled on it (not a rollback)."""
    log_group_name: pulumi.Output[str]
    """The tasks' CloudWatch log group."""
    repository_url: pulumi.Output[str]
    """The ECR repository of the PgBouncer image."""
    load_balancer_arn_suffix: pulumi.Output[str]
    """CloudWatch's `LoadBalancer` dimension, for alarms and dashboards."""
    target_group_arn_suffix: pulumi.Output[str]
    """CloudWatch's `TargetGroup` dimension."""
    metrics_service: pulumi.Output[str]
    """The metrics sidecar's `Service` dimension: `ObservabilityArgs.metric_service`."""

    # Python programs only: the listening port, a constant (LISTEN_PORT).
    port = CONTAINER_PORT

    def __init__(self, name: str, args: PoolerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Every check before anything is registered: a bad field must not leave a half-built pooler.
        cfg = sizing(args)
        recovery_window_days = whole_number(args.get("secret_recovery_window_days", DEFAULT_RECOVERY_WINDOW_DAYS),
                                            "secret_recovery_window_days", PoolerArgsError)
        if recovery_window_days not in RECOVERY_WINDOWS:
            raise PoolerArgsError(f"PoolerArgs: secret_recovery_window_days must be 0 or 7 to 30, "
                                  f"got {recovery_window_days}")
        metrics_namespace = args.get("metrics_namespace", DEFAULT_NAMESPACE)
        given_service = args.get("metrics_service")
        for field, value in (("metrics_namespace", metrics_namespace), ("metrics_service", given_service)):
            if value is not None and not (isinstance(value, str) and _METRIC_NAME.match(value)):
                raise PoolerArgsError(f"PoolerArgs: {field} must be letters, digits and _ . - / # :, got {value!r}")
        if metrics_namespace.startswith("AWS/"):
            raise PoolerArgsError("PoolerArgs: metrics_namespace must not start with 'AWS/' (AWS's own namespaces)")
        context_dir = Path(args.get("image_context") or package_dir("pgbouncer"))
        if not (context_dir / "Dockerfile").is_file():
            raise PoolerArgsError(f"PoolerArgs: image_context {str(context_dir)!r} has no Dockerfile: give the "
                                  "pgbouncer folder of lifeguard (or leave image_context unset)")
        port = args.get("database_port")
        if port is not None and not isinstance(port, pulumi.Output):
            port = whole_number(port, "database_port", PoolerArgsError)
            if not 0 < port < 65536:
                raise PoolerArgsError(f"PoolerArgs: database_port must be a TCP port (1 to 65535), got {port}")
        if (args.get("alternate_username") is None) != (args.get("alternate_verifier") is None):
            raise PoolerArgsError("PoolerArgs: alternate_username and alternate_verifier go together: "
                                  "give both (a second login role for rotation) or neither")
        deletion_protection = bool(args.get("deletion_protection", True))
        # sizing() checked it against CloudWatch's values.
        log_retention_days = whole_number(args.get("log_retention_days", _default("logRetentionDays")),
                                          "log_retention_days")

        super().__init__(component_type(Pooler, "pooler"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = _account(self)
        region = account.region
        secret_prefix = args.get("secret_name_prefix") or secret_name_prefix(region)
        metrics_service = given_service or metrics_service_name(region)
        tags = args.get("tags")
        create_service_linked_role = args.get("create_ecs_service_linked_role")
        if create_service_linked_role is None:
            create_service_linked_role = not ecs_service_linked_role_exists(self)

        alternate = args.get("alternate_username")
        second: dict[str, Any] = {} if alternate is None else {
            ALTERNATE_USERNAME_KEY: alternate, ALTERNATE_PASSWORD_KEY: args.get("alternate_verifier")}
        credentials_value: pulumi.Output[str] = pulumi.Output.json_dumps(
            {"username": args["username"], "password": args["verifier"], **second}
        )
        credentials, credentials_version = stored_secret(
            f"{name}-credentials",
            name_prefix=f"{secret_prefix}POOLER_CREDENTIALS-",
            description="The application role's SCRAM verifier, rendered into PgBouncer's auth_file; read by the "
                        "pooler tasks, and by the migration job, which sets the same verifier in Postgres",
            recovery_window_days=recovery_window_days,
            value=credentials_value,
            opts=child,
            tags=tags,
        )
        # The console user exists only in PgBouncer's auth_file (nothing in Postgres): its own random
        # password, so reading the console never needs, or reveals, the database password.
        stats_password = generated_password(f"{name}-stats-password", child)
        stats_credentials, stats_credentials_version = stored_secret(
            f"{name}-stats-credentials",
            name_prefix=f"{secret_prefix}POOLER_STATS_CREDENTIALS-",
            description="PgBouncer's read-only console user (stats_users) for the metrics sidecar; "
                        "read by the pooler tasks only",
            recovery_window_days=recovery_window_days,
            value=pulumi.Output.json_dumps({"username": STATS_USER, "password": stats_password.result}),
            opts=child,
            tags=tags,
        )

        load_balancer = aws.lb.LoadBalancer(
            f"{name}-nlb",
            internal=True,
            load_balancer_type="network",
            subnets=args["subnet_ids"],
            security_groups=[args["load_balancer_security_group_id"]],
            # A function in an AZ whose task is gone still reaches the others.
            enable_cross_zone_load_balancing=True,
            enable_deletion_protection=deletion_protection,
            ip_address_type="ipv4",
            tags=tags,
            # Pulumi refuses to plan the deletion (or replacement) of a protected resource, so a
            # `pulumi destroy` of a protected stack stops before it deletes anything, rather than at
            # AWS's refusal after everything around the NLB and the database is gone.
            opts=pulumi.ResourceOptions(parent=self, protect=deletion_protection),
        )
        # Issued for the name clients dial; its key reaches the tasks as a secret, the certificate
        # (public) in the environment, so a renewed one rolls the tasks.
        certificate = PoolerCertificate(
            f"{name}-tls",
            PoolerCertificateArgs(
                ca_cert_pem=args["ca_cert_pem"],
                ca_private_key_pem=args["ca_private_key_pem"],
                dns_name=load_balancer.dns_name,
                secret_name_prefix=secret_prefix,
                recovery_window_days=recovery_window_days,
                tags=tags,
            ),
            opts=child,
        )

        # ECS creates its service-linked role on first use, except when the first use is a service with
        # a load balancer ("Unable to assume the service linked role"): a new account needs it first.
        # CreateCluster also creates it when it is missing, so every ECS cluster of the stack (this one
        # and the migration job's) waits for it; otherwise a cluster can take the name first and the
        # stack's create fails ("has been taken in this account").
        # Retained on delete: the role belongs to the account (other ECS users need it), and the next
        # `up` finds it and no longer declares it, which with retain_on_delete only forgets it.
        service_linked_role: list[pulumi.Resource] = []
        if create_service_linked_role:
            service_linked_role.append(aws.iam.ServiceLinkedRole(
                f"{name}-ecs-service-linked-role",
                aws_service_name=ECS_SERVICE_PRINCIPAL,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            ))
        # Python programs only (not a schema output): every other ECS cluster of the stack must wait for it too.
        self.ecs_service_linked_role = service_linked_role

        base = fargate_base(
            name,
            region=region,
            context_dir=context_dir,
            architecture=cfg.architecture,
            account=account,
            deletion_protection=deletion_protection,
            log_retention_days=log_retention_days,
            role_description=(
                "Starts the PgBouncer tasks: pulls their image, writes their logs, reads their credentials"
            ),
            secrets={"ReadPoolerCredentials": credentials.arn, "ReadPoolerStatsCredentials": stats_credentials.arn,
                     "ReadPoolerTlsKey": certificate.key_secret_arn},
            opts=child,
            cluster_depends_on=service_linked_role,
            tags=tags,
        )
        image, cluster, logs, execution_policy = base.image, base.cluster, base.logs, base.execution_policy

        # The template config made, for the RDS endpoint's *name* (PgBouncer's verify-full checks it).
        upstream = cfg.settings.upstream
        settings_json = pulumi.Output.all(args["database_address"], port).apply(
            lambda v: replace(cfg.settings, upstream=replace(
                upstream, host=v[0], port=upstream.port if v[1] is None else int(v[1]))).to_json()
        )

        container = {
            "name": CONTAINER_NAME,
            "image": image.image_uri,
            "essential": True,
            "portMappings": [{"containerPort": CONTAINER_PORT, "protocol": "tcp"}],
            "environment": [
                {"name": SETTINGS_ENV, "value": settings_json},
                {"name": CREDENTIALS_VERSION_ENV, "value": pulumi.Output.concat(
                    credentials_version.version_id, ",", stats_credentials_version.version_id)},
                {"name": CERT_ENV, "value": certificate.cert_pem},
            ],
            "secrets": [
                {"name": CREDENTIALS_ENV, "valueFrom": credentials.arn},
                {"name": STATS_CREDENTIALS_ENV, "valueFrom": stats_credentials.arn},
                {"name": KEY_ENV, "valueFrom": certificate.key_secret_arn},
            ],
            # The image is read-only; PgBouncer writes only to these two task volumes: its rendered
            # configuration and TLS pair, and its Unix socket (the settings' unix_socket_dir).
            "readonlyRootFilesystem": True,
            "mountPoints": [
                {"sourceVolume": RUN_VOLUME, "containerPath": IMAGE_RUN_DIR, "readOnly": False},
                {"sourceVolume": SOCKET_VOLUME, "containerPath": IMAGE_SOCKET_DIR, "readOnly": False},
            ],
            # Every client is a file descriptor; Fargate's default limit is not something to rely on.
            "ulimits": [{"name": "nofile", "softLimit": cfg.nofile, "hardLimit": cfg.nofile}],
            # The image stops PgBouncer with SIGINT: in-flight transactions finish, then it exits.
            "stopTimeout": cfg.stop_timeout_s,
            "logConfiguration": base.log_configuration(LOG_STREAM_PREFIX),
        }
        metrics = {
            "name": METRICS_CONTAINER_NAME,
            "image": image.image_uri,
            # The image's entrypoint starts PgBouncer; this container runs the publisher instead.
            "entryPoint": METRICS_COMMAND,
            # Losing the metrics must not stop the pooler (the ConsoleUp graph shows a dead sidecar).
            "essential": False,
            # START, not HEALTHY: PgBouncer has no container health check, and the publisher retries
            # every interval until the console answers.
            "dependsOn": [{"containerName": CONTAINER_NAME, "condition": "START"}],
            "memoryReservation": METRICS_MEMORY_RESERVATION_MB,
            "environment": [
                # The same settings JSON as PgBouncer's: the socket directory and port come from it.
                {"name": SETTINGS_ENV, "value": settings_json},
                {"name": METRICS_SERVICE_ENV, "value": metrics_service},
                {"name": METRICS_NAMESPACE_ENV, "value": metrics_namespace},
                # The certificate PgBouncer serves (public): the sidecar publishes its days left, which
                # the expiry alarm reads (a stack with no `up` for eleven months would otherwise find out
                # when the entrypoint refuses to start tasks on the expired certificate).
                {"name": CERT_ENV, "value": certificate.cert_pem},
            ],
            "secrets": [{"name": METRICS_CREDENTIALS_ENV, "valueFrom": stats_credentials.arn}],
            # Read-only: connect() on a Unix socket checks the socket file's permissions, not the
            # mount's read-only flag (as with a Docker socket mounted :ro); the sidecar writes nothing
            # (EMF lines go to stdout), so its root filesystem is read-only too.
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": SOCKET_VOLUME, "containerPath": IMAGE_SOCKET_DIR, "readOnly": True}],
            "logConfiguration": base.log_configuration(METRICS_LOG_STREAM_PREFIX),
        }
        task_definition = base.task_definition(
            cpu=cfg.cpu,
            memory_mb=cfg.memory_mb,
            containers=[container, metrics],
            # Fargate bind mounts (no host path): task-scoped storage, owned by the runtime user because
            # the image declares both paths VOLUMEs. The socket volume is shared with the sidecar; the
            # run volume (which holds userlist.txt and the TLS key) is PgBouncer's alone.
            volumes=[{"name": RUN_VOLUME}, {"name": SOCKET_VOLUME}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[certificate.key_secret_version]),
        )

        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=CONTAINER_PORT,
            protocol="TCP",
            target_type="ip",
            vpc_id=args["vpc_id"],
            # Idle Lambda clients never leave on their own: do not wait the default 300 s per task.
            deregistration_delay=cfg.deregistration_delay_s,
            # Tasks see the NLB's addresses, which is what the pooler's security group allows.
            preserve_client_ip="false",
            health_check={
                "enabled": True,
                "protocol": "TCP",
                "port": "traffic-port",
                "interval": 10,
                "healthy_threshold": 2,
                "unhealthy_threshold": 2,
            },
            # One failed probe must not reset every client of a task: drain them instead.
            target_health_states=[{"enable_unhealthy_connection_termination": False,
                                   "unhealthy_draining_interval": 60}],
            tags=tags,
            # A change that replaces the NLB (removing an AZ, other subnets) replaces its listener, and
            # ELB refuses the new listener a target group the old NLB still uses: a new NLB gets a new
            # target group (created first, auto-named), and the service moves to it.
            opts=pulumi.ResourceOptions(parent=self, replace_with=[load_balancer]),
        )
        listener = aws.lb.Listener(
            f"{name}-listener",
            load_balancer_arn=load_balancer.arn,
            port=CONTAINER_PORT,
            protocol="TCP",
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
            tags=tags,
            opts=child,
        )

        service = aws.ecs.Service(
            f"{name}-service",
            cluster=cluster.arn,
            task_definition=task_definition.arn,
            launch_type="FARGATE",
            platform_version="LATEST",
            desired_count=cfg.min_tasks,
            deployment_maximum_percent=cfg.deployment_maximum_percent,
            deployment_minimum_healthy_percent=cfg.deployment_minimum_healthy_percent,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # Fargate spreads a service's tasks over the subnets' AZs; rebalancing keeps them spread.
            availability_zone_rebalancing="ENABLED",
            network_configuration={
                "subnets": args["subnet_ids"],
                "security_groups": [args["task_security_group_id"]],
                "assign_public_ip": False,
            },
            load_balancers=[{
                "target_group_arn": target_group.arn,
                "container_name": CONTAINER_NAME,
                "container_port": CONTAINER_PORT,
            }],
            health_check_grace_period_seconds=30,
            propagate_tags="SERVICE",
            tags=tags,
            enable_ecs_managed_tags=True,
            # `pulumi up` fails (and the circuit breaker rolls back) when PgBouncer cannot start.
            wait_for_steady_state=True,
            # And on what the component itself depends on (``opts.depends_on``, e.g. the network's pooler path:
            # routes, endpoints, security-group rules), which children do not inherit: a first deployment must
            # not start tasks whose path is still being built.
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(
                parent=self,
                depends_on=[listener, execution_policy, *service_linked_role],
                # The autoscaler owns the task count once the service exists.
                ignore_changes=["desiredCount"],
            ), pulumi.ResourceOptions(depends_on=opts.depends_on if opts is not None else None)),
        )
        scaling_target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=cfg.min_tasks,
            max_capacity=cfg.max_tasks,
            tags=tags,
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=scaling_target.service_namespace,
            scalable_dimension=scaling_target.scalable_dimension,
            resource_id=scaling_target.resource_id,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
                "target_value": float(cfg.cpu_target_percent),
                "scale_out_cooldown": 60,
                # Scaling in drops the clients of the stopped task: do it slowly.
                "scale_in_cooldown": 300,
            },
            opts=child,
        )

        self.endpoint = load_balancer.dns_name
        self.certificate_expiry = certificate.expiry
        self.credentials_secret_arn = credentials.arn
        self.stats_credentials_secret_arn = stats_credentials.arn
        self.cluster_name = cluster.name
        self.service_name = service.name
        self.task_definition_arn = task_definition.arn
        self.log_group_name = logs.name
        self.repository_url = image.repository_url
        self.load_balancer_arn_suffix = load_balancer.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        self.metrics_service = pulumi.Output.from_input(metrics_service)
        self.register_outputs({
            "endpoint": self.endpoint,
            "credentialsSecretArn": self.credentials_secret_arn,
            "statsCredentialsSecretArn": self.stats_credentials_secret_arn,
            "clusterName": self.cluster_name,
            "serviceName": self.service_name,
            "taskDefinitionArn": self.task_definition_arn,
        })
