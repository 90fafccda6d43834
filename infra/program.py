"""The whole stack: validate, resolve placement, build artifacts, then create the components.

Everything that can fail for a reason the user controls (config, AZs, subnets, missing build
inputs) fails before the first resource is registered, so a bad stack never half-exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import SAMPLE_REQUIREMENTS
from infra.samples import Functions, FunctionsArgs
from lambdas.contract import CHARGE_CREDITS, NODE_SOURCE_DIR, READ_INVOICES, READ_INVOICES_NODE
from lifeguard.aws import build_context, deployed, lambda_package, node_package, policies
from lifeguard.aws import outputs as output_names
from lifeguard.aws.app_role import AppRoleCredentials, AppRoleCredentialsArgs
from lifeguard.aws.config import InfraConfig, InfraConfigError, load
from lifeguard.aws.database import Database, DatabaseArgs
from lifeguard.aws.image import context_tag
from lifeguard.aws.migration_job import MigrationJob, MigrationJobArgs
from lifeguard.aws.naming import METRIC_DIMENSION, SECRET_NAME_PREFIX, stack_name
from lifeguard.aws.network import Network, NetworkArgs
from lifeguard.aws.observability import Observability, ObservabilityArgs, thresholds_args
from lifeguard.aws.pooler import Pooler, PoolerArgs, ecs_service_linked_role_exists
from lifeguard.aws.pooler_tls import (
    CA_PATH,
    PoolerCertificateAuthority,
    PoolerCertificateAuthorityArgs,
)
from lifeguard.aws.secrets import ConnectionSecrets, ConnectionSecretsArgs

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout this sample stack runs from (its samples' sources live here, not in the library)."""


@dataclass(frozen=True)
class ProgramPaths:
    """Where the program finds what it builds, and where it builds (``LIFEGUARD_BUILD_DIR``, for CI caches)."""

    repo_root: Path = REPO_ROOT
    build_dir: Path = field(
        default_factory=build_context.build_dir
    )
    lambda_requirements: Path = SAMPLE_REQUIREMENTS
    node: Path | None = None
    """The ``node`` whose npm builds the Node.js function (default: ``node_package.find_node()``)."""

    @property
    def pgbouncer_context(self) -> Path:
        return self.repo_root / "pgbouncer"

    @property
    def migrator_context(self) -> Path:
        return self.repo_root / "migrator"

    @property
    def lambdas_source(self) -> Path:
        return self.repo_root / "lambdas"

    @property
    def node_source(self) -> Path:
        return self.repo_root / NODE_SOURCE_DIR

    @property
    def shared_packages(self) -> tuple[Path, ...]:
        """Packages of the repository every deployable ships beside its own (``build_context.SHARED_PACKAGE_NAMES``)."""
        return tuple(self.repo_root / name for name in build_context.SHARED_PACKAGE_NAMES)



def resolve_availability_zones(cfg: InfraConfig) -> tuple[str, ...]:
    """The AZs a new VPC uses, or check that existing subnets sit in one VPC across enough AZs."""
    net = cfg.network
    if net.existing_vpc_id is not None:
        zones: list[str] = []
        problems: list[str] = []
        for subnet_id in net.existing_private_subnet_ids:
            subnet = aws.ec2.get_subnet(id=subnet_id)
            if subnet.vpc_id != net.existing_vpc_id:
                problems.append(f"lifeguard:existingPrivateSubnetIds: {subnet_id} is in {subnet.vpc_id}, "
                                f"not in existingVpcId {net.existing_vpc_id}")
            zones.append(subnet.availability_zone)
        if len(set(zones)) < 2:
            problems.append("lifeguard:existingPrivateSubnetIds: the subnets must span at least two AZs, "
                            f"they are all in {', '.join(sorted(set(zones)))}")
        if problems:
            raise InfraConfigError(problems)
        return tuple(zones)
    # Only AZs that need no opt-in: Local Zones lack Fargate, NLB or RDS Multi-AZ.
    available = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    )
    names = sorted(available.names)
    if net.availability_zones:
        unknown = [zone for zone in net.availability_zones if zone not in names]
        if unknown:
            raise InfraConfigError([
                f"lifeguard:availabilityZones: {', '.join(unknown)} is not an available AZ of this region "
                f"(available without opt-in: {', '.join(names) or 'none'})"
            ])
        return net.availability_zones
    if len(names) < net.availability_zone_count:
        raise InfraConfigError([
            f"lifeguard:availabilityZoneCount: {net.availability_zone_count} AZs requested but the region "
            f"has {len(names)} available ({', '.join(names) or 'none'}); lower availabilityZoneCount "
            "(at least 2) or choose another region"
        ])
    return tuple(names[: net.availability_zone_count])


def _secret_name_prefix(region: str) -> str:
    return f"{stack_name(SECRET_NAME_PREFIX, region=region)}/"


def metrics_service_name(region: str) -> str:
    """The ``Service`` dimension of this stack's pooler metrics: stable, and distinct per stack.

    Known before anything exists (the sidecar's environment and the alarms both need it, and the
    ECS service's generated name would make the task definition depend on its own service).
    """
    return stack_name(METRIC_DIMENSION, "pgbouncer", region=region)


def build(cfg: InfraConfig, paths: ProgramPaths | None = None) -> dict[str, Any]:
    """Create every resource; return the stack outputs (name -> value or Output)."""
    paths = paths or ProgramPaths()
    region = aws.get_region().region
    caller = aws.get_caller_identity()
    account = policies.Account.from_caller_arn(caller.arn, caller.account_id, region)
    zones = resolve_availability_zones(cfg)
    # Before any resource: a change that would replace the database or fail half-way is refused here.
    last_up = deployed.stack_outputs()
    refused = deployed.refused_changes(deployed.recorded(last_up), cfg.database)
    if refused:
        raise InfraConfigError(refused)
    scram_iterations = deployed.app_scram_iterations(cfg.database.scram_iterations, last_up)
    # Fail on missing build inputs before creating anything.
    context_tag(paths.pgbouncer_context, cfg.pooler.architecture)
    context_tag(paths.migrator_context, cfg.migration.architecture)
    package = lambda_package.build(
        paths.lambdas_source, cfg.functions.architecture, paths.build_dir / "lambda",
        paths.lambda_requirements, shared_packages=paths.shared_packages,
    )
    node_zip = node_package.build(paths.node_source, paths.build_dir / "node", paths.node)

    network = Network(
        "network",
        NetworkArgs(
            region=region,
            availability_zones=zones,
            api_access=cfg.network.api_access,
            vpc_cidr=cfg.network.vpc_cidr,
            nat_gateway_per_az=cfg.production,
            existing_vpc_id=cfg.network.existing_vpc_id,
            existing_private_subnet_ids=cfg.network.existing_private_subnet_ids,
        ),
    )
    db_cfg = cfg.database
    database = Database(
        "database",
        DatabaseArgs(
            subnet_ids=network.private_subnet_ids,
            security_group_id=network.database_security_group_id,
            settings=db_cfg,
            final_snapshot=cfg.production,
            region=region,
            log_retention_days=cfg.log_retention_days,
        ),
    )
    app_role = AppRoleCredentials("app-role", AppRoleCredentialsArgs(username=db_cfg.app_username,
                                                                     scram_iterations=scram_iterations))
    secret_prefix = _secret_name_prefix(region)
    metrics_service = metrics_service_name(region)
    pooler_ca = PoolerCertificateAuthority("pooler-ca", PoolerCertificateAuthorityArgs())
    pooler_cfg = cfg.pooler
    pooler = Pooler(
        "pooler",
        PoolerArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            load_balancer_security_group_id=network.load_balancer_security_group_id,
            task_security_group_id=network.pooler_security_group_id,
            database_address=database.address,
            db_name=db_cfg.db_name,
            max_connections=db_cfg.max_connections,
            reserved_connections=db_cfg.reserved_connections,
            migration_headroom=db_cfg.migration_headroom,
            username=app_role.username,
            verifier=app_role.verifier,
            ca_cert_pem=pooler_ca.cert_pem,
            ca_private_key_pem=pooler_ca.private_key_pem,
            min_tasks=pooler_cfg.min_tasks,
            max_tasks=pooler_cfg.max_tasks,
            deployment_maximum_percent=pooler_cfg.deployment_maximum_percent,
            cpu=pooler_cfg.cpu,
            memory_mb=pooler_cfg.memory_mb,
            cpu_target_percent=pooler_cfg.cpu_target_percent,
            max_client_conn=pooler_cfg.max_client_conn,
            query_wait_timeout_seconds=pooler_cfg.query_wait_timeout_s,
            stop_timeout_seconds=pooler_cfg.stop_timeout_s,
            deregistration_delay_seconds=pooler_cfg.deregistration_delay_s,
            architecture=pooler_cfg.architecture,
            image_context=str(paths.pgbouncer_context),
            secret_name_prefix=secret_prefix,
            secret_recovery_window_days=cfg.secret_recovery_window_days,
            log_retention_days=cfg.log_retention_days,
            deletion_protection=db_cfg.deletion_protection,
            metrics_service=metrics_service,
            create_ecs_service_linked_role=not ecs_service_linked_role_exists(),
        ),
        # The ECS service waits for the network path its tasks need (routes, endpoints, rules).
        opts=pulumi.ResourceOptions(depends_on=network.pooler_path),
    )
    alarms = cfg.alarms
    observability = Observability(
        "observability",
        ObservabilityArgs(
            cluster_name=pooler.cluster_name,
            service_name=pooler.service_name,
            load_balancer_arn_suffix=pooler.load_balancer_arn_suffix,
            target_group_arn_suffix=pooler.target_group_arn_suffix,
            db_instance_identifier=database.identifier,
            max_connections=db_cfg.max_connections,
            metric_service=metrics_service,
            thresholds=thresholds_args(alarms.thresholds),
            alarm_topic_arn=alarms.topic_arn,
            create_alarm_topic=alarms.email is not None,
            alarm_email=alarms.email,
            # Known already: no second region lookup.
            region=region,
        ),
    )
    secrets = ConnectionSecrets(
        "connection",
        ConnectionSecretsArgs(
            username=db_cfg.username,
            password=database.password,
            app_username=app_role.username,
            app_password=app_role.password,
            db_name=db_cfg.db_name,
            pooler_host=pooler.endpoint,
            pooler_port=pooler.port,
            database_host=database.address,
            database_port=database.port,
            secret_name_prefix=secret_prefix,
            recovery_window_days=cfg.secret_recovery_window_days,
            pooled_root_cert=CA_PATH,
        ),
    )
    functions = Functions(
        "functions",
        FunctionsArgs(
            subnet_ids=network.private_subnet_ids,
            security_group_id=network.functions_security_group_id,
            pooled_secret_arn=secrets.pooled_secret_arn,
            package=package,
            settings=cfg.functions,
            log_retention_days=cfg.log_retention_days,
            pooler_prepared_statements=cfg.pooler.settings.tracks_prepared_statements,
            account=account,
            pooler_ca_layer_arn=pooler_ca.layer_arn,
            node_package=node_zip,
        ),
    )
    migration = MigrationJob(
        "migration",
        MigrationJobArgs(
            region=region,
            account=account,
            subnet_ids=network.private_subnet_ids,
            security_group_id=network.migration_security_group_id,
            direct_secret_arn=secrets.direct_secret_arn,
            app_role=app_role.username,
            app_role_verifier_secret_arn=pooler.credentials_secret_arn,
            settings=cfg.migration,
            context_dir=paths.migrator_context,
            shared_packages=paths.shared_packages,
            log_retention_days=cfg.log_retention_days,
            deletion_protection=db_cfg.deletion_protection,
            cluster_depends_on=pooler.ecs_service_linked_role,
        ),
    )

    outputs: dict[str, Any] = {
        output_names.VPC_ID: network.vpc_id,
        output_names.POOLER_ENDPOINT: pooler.endpoint,
        output_names.POOLER_PORT: pooler.port,
        # Public: what users' own functions verify DATABASE_URL's server against (README, "TLS to the pooler").
        output_names.POOLER_CA_CERTIFICATE: pooler_ca.cert_pem,
        output_names.POOLER_CA_LAYER_ARN: pooler_ca.layer_arn,
        output_names.POOLER_CA_PATH: CA_PATH,
        output_names.POOLER_CERTIFICATE_EXPIRY: pooler.certificate_expiry,
        output_names.DATABASE_ENDPOINT: database.address,
        output_names.DATABASE_PORT: database.port,
        output_names.DATABASE_IDENTIFIER: database.identifier,
        output_names.DATABASE_SETTINGS: deployed.record(db_cfg, scram_iterations),
        output_names.POOLED_SECRET_ARN: secrets.pooled_secret_arn,
        output_names.DIRECT_SECRET_ARN: secrets.direct_secret_arn,
        output_names.POOLER_SECRET_ARN: pooler.credentials_secret_arn,
        output_names.POOLER_STATS_SECRET_ARN: pooler.stats_credentials_secret_arn,
        output_names.POOL_SIZE: cfg.pooler.pool_size,
        output_names.MAX_CONNECTIONS: db_cfg.max_connections,
        output_names.POOLER_CLUSTER_NAME: pooler.cluster_name,
        output_names.POOLER_SERVICE_NAME: pooler.service_name,
        output_names.POOLER_TASK_DEFINITION_ARN: pooler.task_definition_arn,
        output_names.POOLER_LOG_GROUP_NAME: pooler.log_group_name,
        output_names.POOLER_METRICS_SERVICE: metrics_service,
        output_names.DASHBOARD_NAME: observability.dashboard_name,
        output_names.READ_INVOICES_FUNCTION_NAME: functions.names[READ_INVOICES.key],
        output_names.READ_INVOICES_FUNCTION_ARN: functions.arns[READ_INVOICES.key],
        output_names.READ_INVOICES_NODE_FUNCTION_NAME: functions.names[READ_INVOICES_NODE.key],
        output_names.READ_INVOICES_NODE_FUNCTION_ARN: functions.arns[READ_INVOICES_NODE.key],
        output_names.CHARGE_CREDITS_FUNCTION_NAME: functions.names[CHARGE_CREDITS.key],
        output_names.CHARGE_CREDITS_FUNCTION_ARN: functions.arns[CHARGE_CREDITS.key],
        output_names.MIGRATION_CLUSTER_ARN: migration.cluster_arn,
        output_names.MIGRATION_TASK_DEFINITION_ARN: migration.task_definition_arn,
        output_names.MIGRATION_CONTAINER_NAME: migration.container_name,
        output_names.MIGRATION_SUBNET_IDS: migration.subnet_ids,
        output_names.MIGRATION_SECURITY_GROUP_IDS: migration.security_group_ids,
        output_names.MIGRATION_LOG_GROUP_NAME: migration.log_group_name,
        output_names.MIGRATION_LOG_STREAM_PREFIX: migration.log_stream_prefix,
        output_names.MIGRATION_EXECUTION_ROLE_ARN: migration.execution_role_arn,
    }
    if observability.alarm_topic_arn is not None:
        outputs[output_names.ALARM_TOPIC_ARN] = observability.alarm_topic_arn
    return outputs


def main(values: Mapping[str, Any] | None = None) -> None:
    """The Pulumi entry point: read config, build, export."""
    outputs = build(load(values))
    for name, value in outputs.items():
        pulumi.export(name, value)
