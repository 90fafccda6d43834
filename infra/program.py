"""The whole stack: validate, resolve placement, build artifacts, then create the components.

Everything that can fail for a reason the user controls (config, AZs, subnets, missing build
inputs) fails before the first resource is registered, so a bad stack never half-exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import pulumi_aws as aws

from infra import SAMPLE_REQUIREMENTS
from infra.samples import Functions, FunctionsArgs
from lambdas.contract import CHARGE_CREDITS, NODE_SOURCE_DIR, READ_INVOICES, READ_INVOICES_NODE
from lifeguard.aws import (
    CA_PATH,
    SHARED_PACKAGE_NAMES,
    Account,
    AppRoleCredentials,
    AppRoleCredentialsArgs,
    ArgsError,
    AwsApiAccess,
    ConnectionSecrets,
    ConnectionSecretsArgs,
    Database,
    DatabaseArgs,
    DatabaseConfig,
    InfraConfig,
    InfraConfigError,
    MigrationJob,
    MigrationJobArgs,
    Network,
    NetworkArgs,
    Observability,
    ObservabilityArgs,
    PooledClient,
    PooledClientArgs,
    Pooler,
    PoolerArgs,
    PoolerCertificateAuthority,
    PoolerCertificateAuthorityArgs,
    build_dir,
    build_node_package,
    build_python_package,
    check_deployed_database,
    check_rotation,
    context_tag,
    deployed_database_record,
    load_config,
    metrics_service_name,
    read_existing_database,
    rotation_parameter_name,
    rotation_record,
    secret_name_prefix,
    thresholds_args,
)
from lifeguard.aws import outputs as output_names

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout this sample stack runs from (its samples' sources live here, not in the library)."""


@dataclass(frozen=True)
class ProgramPaths:
    """Where the program finds what it builds, and where it builds (``LIFEGUARD_BUILD_DIR``, for CI caches)."""

    repo_root: Path = REPO_ROOT
    build_dir: Path = field(default_factory=build_dir)
    lambda_requirements: Path = SAMPLE_REQUIREMENTS
    node: Path | None = None
    """The ``node`` whose npm builds the Node.js function (default: the one ``build_node_package`` finds)."""

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
        """Packages of the repository every deployable ships beside its own (``SHARED_PACKAGE_NAMES``)."""
        return tuple(self.repo_root / name for name in SHARED_PACKAGE_NAMES)


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


CLIENT = "functions"
"""The stack's own pooled client: the sample functions' group and policy, exported for other stacks' functions."""


def kept_from_network(network: Network) -> pulumi.ResourceOptions:
    """The client's security group and rules were the network's (``network-functions-...``) before the client
    existed: aliases keep a deployed stack's resources (the same group, the same rules; nothing replaced)."""
    network_name = network.pulumi_resource_name
    client_rule = f"{CLIENT}-to-https"
    moved = {f"{CLIENT}-sg",
             *(f"{CLIENT}-to-{target}-{way}" for target in ("nlb", "endpoints") for way in ("out", "in"))}

    def keep(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.name == client_rule:
            old = f"{network_name}-{CLIENT}-to-aws-apis"
        elif args.name in moved:
            old = f"{network_name}-{args.name}"
        else:
            return None
        alias = pulumi.ResourceOptions(aliases=[pulumi.Alias(name=old, parent=network)])
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(args.opts, alias))

    return pulumi.ResourceOptions(transformations=[keep])


def build(cfg: InfraConfig, paths: ProgramPaths | None = None) -> dict[str, Any]:
    """Create every resource; return the stack outputs (name -> value or Output)."""
    paths = paths or ProgramPaths()
    region = aws.get_region().region
    caller = aws.get_caller_identity()
    account = Account.from_caller_arn(caller.arn, caller.account_id, region)
    zones = resolve_availability_zones(cfg)
    # Before any resource: a change that would replace the database or fail half-way is refused here.
    scram_iterations = check_deployed_database(cfg.database)
    rotation = check_rotation(cfg.database, region)
    if cfg.database.existing is not None:
        # What AWS answers about an existing database is checked here too, before anything is created.
        _config_errors(DATABASE_KEYS, lambda: read_existing_database(existing_database_args(cfg.database)))
    # Fail on missing build inputs before creating anything.
    context_tag(paths.pgbouncer_context, cfg.pooler.architecture)
    context_tag(paths.migrator_context, cfg.migration.architecture)
    samples = cfg.functions.sample_functions
    if samples:
        package = build_python_package(
            paths.lambdas_source, cfg.functions.architecture, paths.build_dir / "lambda",
            paths.lambda_requirements, shared_packages=paths.shared_packages,
        )
        node_zip = build_node_package(paths.node_source, paths.build_dir / "node", paths.node)

    net = cfg.network
    network_args: NetworkArgs = {"region": region, "api_access": AwsApiAccess(net.api_access)}
    if net.existing_vpc_id is not None:
        network_args |= {"existing_vpc_id": net.existing_vpc_id,
                         "existing_private_subnet_ids": list(net.existing_private_subnet_ids)}
    else:
        network_args |= {"availability_zones": list(zones), "vpc_cidr": net.vpc_cidr,
                         "nat_gateway_per_az": cfg.production}
    if cfg.database.existing is not None:
        # An existing database has its own group; the Database adds the pooler's and the job's rules into it.
        network_args["database_security_group"] = False
    network = Network("network", network_args)
    db_cfg = cfg.database
    database = _config_errors(DATABASE_KEYS, lambda: Database("database", database_args(cfg, network, region)))
    app_role = AppRoleCredentials("app-role", AppRoleCredentialsArgs(
        username=db_cfg.app_username, scram_iterations=scram_iterations,
        rotation=rotation.rotation, switched=rotation.switched))
    secret_prefix = secret_name_prefix(region)
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
            database_port=database.port,
            db_name=db_cfg.db_name,
            max_connections=db_cfg.max_connections,
            reserved_connections=db_cfg.reserved_connections,
            migration_headroom=db_cfg.migration_headroom,
            username=app_role.username,
            verifier=app_role.verifier,
            alternate_username=app_role.alternate_username,
            alternate_verifier=app_role.alternate_verifier,
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
            # create_ecs_service_linked_role unset: the Pooler looks the account's role up itself.
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
            db_cluster_identifier=db_cfg.existing_cluster_id,
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
            app_username=app_role.active_username,
            app_password=app_role.active_password,
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
    # The stack's own client: the sample functions attach through it, and other stacks' functions may use
    # its group and policy (clientSecurityGroupId, pooledSecretPolicyArn) or build their own client.
    through_endpoints = net.api_access == AwsApiAccess.ENDPOINTS.value
    client_args: PooledClientArgs = {
        "vpc_id": network.vpc_id,
        "pooler_security_group_id": network.load_balancer_security_group_id,
        "pooler_port": pooler.port,
        "pooled_secret_arn": secrets.pooled_secret_arn,
        "ca_layer_arn": pooler_ca.layer_arn,
        "ca_pem": pooler_ca.cert_pem,
        "prepared_statements": cfg.pooler.settings.tracks_prepared_statements,
        "query_wait_timeout_seconds": cfg.pooler.query_wait_timeout_s,
        # Through the endpoints in their VPC (no route out), else HTTPS through the VPC's route.
        "allow_https_egress": not through_endpoints,
        # As deployed stacks hold them (EC2 replaces a group whose description changes).
        "description": "Lambda functions: reach the pooler only",
        "tags": {"Name": f"{network.pulumi_resource_name}-{CLIENT}"},
    }
    if samples:
        # Without them the stack attaches no function of its own: other stacks' clients check their functions'
        # timeouts against poolerQueryWaitTimeoutSeconds.
        client_args["function_timeout_seconds"] = cfg.functions.timeout_s
    if through_endpoints:
        # A string in this mode (the network made endpoints).
        client_args["endpoints_security_group_id"] = network.endpoints_security_group_id.apply(str)
    client = PooledClient(
        CLIENT,
        client_args,
        opts=kept_from_network(network),
    )
    functions: Functions | None = None
    if samples:
        functions = Functions(
            "functions",
            FunctionsArgs(
                subnet_ids=network.private_subnet_ids,
                client=client,
                pooled_secret_arn=secrets.pooled_secret_arn,
                package=package,
                settings=cfg.functions,
                log_retention_days=cfg.log_retention_days,
                account=account,
                node_package=node_zip,
            ),
        )
    migration = _config_errors(MIGRATION_KEYS, lambda: MigrationJob(
        "migration", migration_job_args(cfg, network, database, secrets, app_role, pooler, region),
        # ECS's service-linked role, when the stack creates it, before the job's cluster.
        pulumi.ResourceOptions(depends_on=pooler.ecs_service_linked_role),
    ))

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
        output_names.DATABASE_SETTINGS: {**deployed_database_record(db_cfg, scram_iterations),
                                         **rotation_record(rotation)},
        output_names.POOLED_SECRET_ARN: secrets.pooled_secret_arn,
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
        output_names.MIGRATION_CLUSTER_ARN: migration.cluster_arn,
        output_names.MIGRATION_TASK_DEFINITION_ARN: migration.task_definition_arn,
        output_names.MIGRATION_CONTAINER_NAME: migration.container_name,
        output_names.MIGRATION_SUBNET_IDS: migration.subnet_ids,
        output_names.MIGRATION_SECURITY_GROUP_IDS: migration.security_group_ids,
        output_names.MIGRATION_LOG_GROUP_NAME: migration.log_group_name,
        output_names.MIGRATION_LOG_STREAM_PREFIX: migration.log_stream_prefix,
        output_names.MIGRATION_EXECUTION_ROLE_ARN: migration.execution_role_arn,
        output_names.MIGRATION_TASK_ROLE_ARN: migration.task_role_arn,
        # What a separate stack attaches its functions with (README, "Stack outputs").
        output_names.PRIVATE_SUBNET_IDS: network.private_subnet_ids,
        output_names.POOLER_SECURITY_GROUP_ID: network.load_balancer_security_group_id,
        output_names.POOLER_QUERY_WAIT_TIMEOUT_SECONDS: cfg.pooler.query_wait_timeout_s,
        output_names.POOLER_PREPARED_STATEMENTS: cfg.pooler.settings.tracks_prepared_statements,
        output_names.CLIENT_SECURITY_GROUP_ID: client.security_group_id,
        output_names.POOLED_SECRET_POLICY_ARN: client.policy_arn,
    }
    # Either the stack holds the owner's password (a direct-URL secret) or the owner secret does (read at run time).
    if secrets.direct_secret_arn is not None:
        outputs[output_names.DIRECT_SECRET_ARN] = secrets.direct_secret_arn
    else:
        outputs[output_names.DATABASE_OWNER_SECRET_ARN] = database.owner_secret_arn
    if through_endpoints:
        outputs[output_names.ENDPOINTS_SECURITY_GROUP_ID] = network.endpoints_security_group_id
    if functions is not None:
        outputs |= {
            output_names.READ_INVOICES_FUNCTION_NAME: functions.names[READ_INVOICES.key],
            output_names.READ_INVOICES_FUNCTION_ARN: functions.arns[READ_INVOICES.key],
            output_names.READ_INVOICES_NODE_FUNCTION_NAME: functions.names[READ_INVOICES_NODE.key],
            output_names.READ_INVOICES_NODE_FUNCTION_ARN: functions.arns[READ_INVOICES_NODE.key],
            output_names.CHARGE_CREDITS_FUNCTION_NAME: functions.names[CHARGE_CREDITS.key],
            output_names.CHARGE_CREDITS_FUNCTION_ARN: functions.arns[CHARGE_CREDITS.key],
        }
    if observability.alarm_topic_arn is not None:
        outputs[output_names.ALARM_TOPIC_ARN] = observability.alarm_topic_arn
    return outputs


# Which config key each component argument comes from, so a component's refusal names the key to change.
DATABASE_KEYS = {"security_group_id": "existingDatabaseSecurityGroupId",
                 "existing_instance_identifier": "existingDatabaseInstanceId",
                 "existing_cluster_identifier": "existingAuroraClusterId",
                 "owner_secret_arn": "existingDatabaseOwnerSecretArn",
                 "max_connections": "existingDatabaseMaxConnections"}
MIGRATION_KEYS = {"image": "migrationImage", "command": "migrationCommand",
                  "bookkeeping_tables": "migrationBookkeepingTables"}
T = TypeVar("T")


def _config_errors(keys: Mapping[str, str], make: Callable[[], T]) -> T:
    """``make()``, with a component's refusal of an argument reported as the config key it came from."""
    try:
        return make()
    except ArgsError as exc:
        key = keys.get(exc.field)
        if key is None:
            raise
        raise InfraConfigError([f"lifeguard:{key}: {exc.detail}"]) from None


def database_args(cfg: InfraConfig, network: Network, region: str) -> DatabaseArgs:
    """The database from the stack's config: a new instance, or an existing instance or Aurora cluster."""
    db_cfg = cfg.database
    if db_cfg.existing is None:
        new: DatabaseArgs = {
            "security_group_id": network.database_security_group_id.apply(_made_by_the_network),
            "db_name": db_cfg.db_name,
            "max_connections": db_cfg.max_connections,
            "subnet_ids": network.private_subnet_ids,
            "postgres_major_version": db_cfg.postgres_major_version,
            "instance_class": db_cfg.instance_class,
            "allocated_storage_gb": db_cfg.allocated_storage_gb,
            "max_allocated_storage_gb": db_cfg.max_allocated_storage_gb,
            "username": db_cfg.username,
            "backup_retention_days": db_cfg.backup_retention_days,
            "multi_az": db_cfg.multi_az,
            "deletion_protection": db_cfg.deletion_protection,
            "apply_immediately": db_cfg.apply_immediately,
            "final_snapshot": cfg.production,
            "log_retention_days": cfg.log_retention_days,
            "region": region,
        }
        if db_cfg.manage_master_user_password:
            new["manage_master_user_password"] = True
        return new
    # The network's rules reach its own database group; these reach the existing database's.
    return {**existing_database_args(db_cfg),
            "client_security_group_ids": [network.pooler_security_group_id, network.migration_security_group_id]}


def _made_by_the_network(group_id: str | None) -> str:
    if group_id is None:  # a programming error: the network makes the group for a new database
        raise AssertionError("the network made no database security group for a new database")
    return group_id


def existing_database_args(db_cfg: DatabaseConfig) -> DatabaseArgs:
    """An existing database's arguments, but for the clients' groups (which the network makes)."""
    assert db_cfg.existing_security_group_id is not None  # checked when the config was read
    existing: DatabaseArgs = {
        "security_group_id": db_cfg.existing_security_group_id,
        "db_name": db_cfg.db_name,
        "max_connections": db_cfg.max_connections,
    }
    if db_cfg.existing_instance_id is not None:
        existing["existing_instance_identifier"] = db_cfg.existing_instance_id
    elif db_cfg.existing_cluster_id is not None:
        existing["existing_cluster_identifier"] = db_cfg.existing_cluster_id
    if db_cfg.existing_owner_secret_arn is not None:
        existing["owner_secret_arn"] = db_cfg.existing_owner_secret_arn
    return existing


def migration_job_args(cfg: InfraConfig, network: Network, database: Database, secrets: ConnectionSecrets,
                       app_role: AppRoleCredentials, pooler: Pooler, region: str) -> MigrationJobArgs:
    """The migration job from the stack's config: the direct-URL secret, or the owner secret read at run time;
    it records the rotation it set in Postgres where :func:`check_rotation` reads it before a switch."""
    mig = cfg.migration
    args: MigrationJobArgs = {
        "subnet_ids": network.private_subnet_ids,
        "security_group_id": network.migration_security_group_id,
        "app_role": app_role.username,
        "app_role_verifier_secret_arn": pooler.credentials_secret_arn,
        "app_role_alternate": True,
        "rotation_parameter_name": rotation_parameter_name(region),
        "rotation": cfg.database.app_password_rotation,
        "switched": cfg.database.app_password_switched,
        "architecture": mig.architecture,
        "cpu": mig.cpu,
        "memory_mb": mig.memory_mb,
        "demo_data": mig.demo_data,
        "bookkeeping_tables": list(mig.bookkeeping_tables),
        "command": list(mig.command),
        "log_retention_days": cfg.log_retention_days,
        "deletion_protection": cfg.database.deletion_protection,
    }
    image = mig.image_uri or (str(mig.image_folder) if mig.image_folder is not None else None)
    if image is not None:
        args["image"] = image
    if secrets.direct_secret_arn is not None:
        args["direct_secret_arn"] = secrets.direct_secret_arn
    else:
        args["owner_secret_arn"] = database.owner_secret_arn.apply(_known_secret_arn)
        args["database_host"] = database.address
        args["database_port"] = database.port
        args["db_name"] = cfg.database.db_name
    return args


def _known_secret_arn(arn: str | None) -> str:
    # The Database refuses an existing database without one; a new managed instance always has one.
    if not arn:
        raise InfraConfigError(["the database has no owner secret for the migration job to read"])
    return arn


def main(values: Mapping[str, Any] | None = None) -> None:
    """The Pulumi entry point: read config, build, export."""
    outputs = build(load_config(values))
    for name, value in outputs.items():
        pulumi.export(name, value)
