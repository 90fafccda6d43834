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

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from lifeguard.aws.config import PoolerConfig
from lifeguard.aws.fargate_base import fargate_base
from lifeguard.aws.policies import Account
from lifeguard.aws.pooler_tls import (
    PoolerCertificate,
    PoolerCertificateArgs,
    PoolerCertificateAuthority,
)
from lifeguard.aws.secrets import generated_password, stored_secret
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


@dataclass(frozen=True)
class PoolerArgs:
    region: str
    account: Account
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    load_balancer_security_group_id: pulumi.Input[str]
    task_security_group_id: pulumi.Input[str]
    database_address: pulumi.Output[str]
    """The RDS endpoint name: PgBouncer verifies the server certificate against it."""
    username: str
    """The application role: the only user clients log in as (so the pool sizing holds)."""
    verifier: pulumi.Output[str]
    """The role's SCRAM verifier (:class:`lifeguard.aws.app_role.AppRoleCredentials`), never a password."""
    settings: PoolerConfig
    context_dir: Path
    """The ``pgbouncer/`` folder: build context of the image."""
    secret_name_prefix: str
    secret_recovery_window_days: int
    log_retention_days: int
    deletion_protection: bool
    """AWS's deletion protection on the NLB and Pulumi's ``protect`` on it; also keeps the image repository."""
    metrics_service: str
    """The sidecar's ``LIFEGUARD_METRICS_SERVICE``: the ``Service`` dimension the alarms read. A plain
    string, not the ECS service's generated name, which would make the task definition depend on
    the service that depends on it."""
    certificate_authority: PoolerCertificateAuthority
    """Signs PgBouncer's certificate for the NLB's name (:mod:`lifeguard.aws.pooler_tls`)."""
    metrics_namespace: str = DEFAULT_NAMESPACE
    network_path: Sequence[pulumi.Resource] = ()
    """The network resources the tasks need to start and pass health checks (``Network.pooler_path``)."""
    create_ecs_service_linked_role: bool = False
    """The account has no ``AWSServiceRoleForECS`` yet (a brand-new account): create it before the service."""
    database_port: pulumi.Input[int] | None = None
    """The database's port (``Database.port``: an existing database's may not be 5432); default: the settings'."""
    alternate_username: str | None = None
    """The second login role a password rotation switches ``DATABASE_URL`` to (docs/roles.md), if any."""
    alternate_verifier: pulumi.Output[str] | None = None
    """Its SCRAM verifier: the secret's ``alternate_password`` key, beside the first role's."""


class Pooler(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    """The NLB's DNS name."""
    port: int = CONTAINER_PORT
    certificate_expiry: pulumi.Output[str]
    """When the certificate PgBouncer serves expires (a ``pulumi up`` in the last 30 days renews it)."""
    credentials_secret_arn: pulumi.Output[str]
    stats_credentials_secret_arn: pulumi.Output[str]
    """The metrics sidecar's console login (``stats_users``); read by the pooler tasks only."""
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]
    """The revision the service is asked to run; the pipeline checks the service settled on it (not a rollback)."""
    log_group_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    """CloudWatch's ``LoadBalancer`` dimension, for alarms and dashboards."""
    ecs_service_linked_role: list[pulumi.Resource]
    """The ``AWSServiceRoleForECS`` the stack creates in a new account (else empty): every other ECS
    cluster of the stack must wait for it too."""
    target_group_arn_suffix: pulumi.Output[str]
    """CloudWatch's ``TargetGroup`` dimension."""

    def __init__(self, name: str, args: PoolerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:pooler:Pooler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings

        second: dict[str, Any] = {} if args.alternate_username is None else {
            ALTERNATE_USERNAME_KEY: args.alternate_username, ALTERNATE_PASSWORD_KEY: args.alternate_verifier}
        credentials_value: pulumi.Output[str] = pulumi.Output.json_dumps(
            {"username": args.username, "password": args.verifier, **second}
        )
        credentials, credentials_version = stored_secret(
            f"{name}-credentials",
            name_prefix=f"{args.secret_name_prefix}POOLER_CREDENTIALS-",
            description="The application role's SCRAM verifier, rendered into PgBouncer's auth_file; read by the "
                        "pooler tasks, and by the migration job, which sets the same verifier in Postgres",
            recovery_window_days=args.secret_recovery_window_days,
            value=credentials_value,
            opts=child,
        )
        # The console user exists only in PgBouncer's auth_file (nothing in Postgres): its own random
        # password, so reading the console never needs, or reveals, the database password.
        stats_password = generated_password(f"{name}-stats-password", child)
        stats_credentials, stats_credentials_version = stored_secret(
            f"{name}-stats-credentials",
            name_prefix=f"{args.secret_name_prefix}POOLER_STATS_CREDENTIALS-",
            description="PgBouncer's read-only console user (stats_users) for the metrics sidecar; "
                        "read by the pooler tasks only",
            recovery_window_days=args.secret_recovery_window_days,
            value=pulumi.Output.json_dumps({"username": STATS_USER, "password": stats_password.result}),
            opts=child,
        )

        load_balancer = aws.lb.LoadBalancer(
            f"{name}-nlb",
            internal=True,
            load_balancer_type="network",
            subnets=args.subnet_ids,
            security_groups=[args.load_balancer_security_group_id],
            # A function in an AZ whose task is gone still reaches the others.
            enable_cross_zone_load_balancing=True,
            enable_deletion_protection=args.deletion_protection,
            ip_address_type="ipv4",
            # Pulumi refuses to plan the deletion (or replacement) of a protected resource, so a
            # `pulumi destroy` of a protected stack stops before it deletes anything, rather than at
            # AWS's refusal after everything around the NLB and the database is gone.
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        # Issued for the name clients dial; its key reaches the tasks as a secret, the certificate
        # (public) in the environment, so a renewed one rolls the tasks.
        certificate = PoolerCertificate(
            f"{name}-tls",
            PoolerCertificateArgs(
                authority=args.certificate_authority,
                dns_name=load_balancer.dns_name,
                secret_name_prefix=args.secret_name_prefix,
                recovery_window_days=args.secret_recovery_window_days,
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
        if args.create_ecs_service_linked_role:
            service_linked_role.append(aws.iam.ServiceLinkedRole(
                f"{name}-ecs-service-linked-role",
                aws_service_name=ECS_SERVICE_PRINCIPAL,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            ))
        self.ecs_service_linked_role = service_linked_role

        base = fargate_base(
            name,
            region=args.region,
            context_dir=args.context_dir,
            architecture=cfg.architecture,
            account=args.account,
            deletion_protection=args.deletion_protection,
            log_retention_days=args.log_retention_days,
            role_description=(
                "Starts the PgBouncer tasks: pulls their image, writes their logs, reads their credentials"
            ),
            secrets={"ReadPoolerCredentials": credentials.arn, "ReadPoolerStatsCredentials": stats_credentials.arn,
                     "ReadPoolerTlsKey": certificate.key_secret_arn},
            opts=child,
            cluster_depends_on=service_linked_role,
        )
        image, cluster, logs, execution_policy = base.image, base.cluster, base.logs, base.execution_policy

        # The template config made, for the RDS endpoint's *name* (PgBouncer's verify-full checks it).
        upstream = cfg.settings.upstream
        settings_json = pulumi.Output.all(args.database_address, args.database_port).apply(
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
                {"name": METRICS_SERVICE_ENV, "value": args.metrics_service},
                {"name": METRICS_NAMESPACE_ENV, "value": args.metrics_namespace},
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
            vpc_id=args.vpc_id,
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
                "subnets": args.subnet_ids,
                "security_groups": [args.task_security_group_id],
                "assign_public_ip": False,
            },
            load_balancers=[{
                "target_group_arn": target_group.arn,
                "container_name": CONTAINER_NAME,
                "container_port": CONTAINER_PORT,
            }],
            health_check_grace_period_seconds=30,
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # `pulumi up` fails (and the circuit breaker rolls back) when PgBouncer cannot start.
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[listener, execution_policy, *args.network_path, *service_linked_role],
                # The autoscaler owns the task count once the service exists.
                ignore_changes=["desiredCount"],
            ),
        )
        scaling_target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=cfg.min_tasks,
            max_capacity=cfg.max_tasks,
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
        self.register_outputs({
            "endpoint": self.endpoint,
            "credentialsSecretArn": self.credentials_secret_arn,
            "statsCredentialsSecretArn": self.stats_credentials_secret_arn,
            "clusterName": self.cluster_name,
            "serviceName": self.service_name,
            "taskDefinitionArn": self.task_definition_arn,
        })
