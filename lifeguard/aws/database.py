"""The database the pooler and the migration job reach: one of three, chosen in :class:`DatabaseArgs`.

- A new RDS PostgreSQL instance (the default): private, encrypted, TLS forced, an explicit ``max_connections``
  set in the parameter group rather than left to RDS's memory formula, so the pool sizing arithmetic
  (``pgbouncer.sizing``) works from a number known at preview. Its master password is generated (in the
  stack's state, as a secret), or with ``manage_master_user_password`` kept by RDS in a secret of its own.
- An existing RDS PostgreSQL instance (``existing_instance_identifier``), or
- an existing Aurora PostgreSQL cluster (``existing_cluster_identifier``; its writer endpoint).

What the stack cannot read at preview the user gives: ``max_connections`` (for the pool sizing and the
connections alarm), the database's security group (the component adds the rules from its clients' groups)
and the owner's secret (JSON with ``username`` and ``password``, e.g. RDS's managed master user secret).
That secret is never read by the program: the migration task reads it at run time (ECS ``secrets``), so
an existing owner's password never enters Pulumi's state.

Public (``lifeguard.aws``): no ``from __future__ import annotations`` here, so Pulumi's component analyzer
reads the real annotations (see the module docstring of ``lifeguard.aws``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Required, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from lifeguard.aws.keys import text_default, whole_default
from lifeguard.aws.naming import RDS_INSTANCE, stack_name
from lifeguard.aws.secrets import generated_password
from lifeguard.aws.type_token import component_type
from lifeguard.aws.types import ArgsError

# The CA whose roots are in the RDS global bundle the images verify against.
RDS_CA_IDENTIFIER = "rds-ca-rsa2048-g1"
# What a new instance gets when the args leave it out: the sample stack's defaults (lifeguard.aws.keys).
DEFAULT_POSTGRES_MAJOR_VERSION = whole_default("postgresMajorVersion")
DEFAULT_INSTANCE_CLASS = text_default("dbInstanceClass")
DEFAULT_ALLOCATED_STORAGE_GB = whole_default("dbAllocatedStorageGb")
DEFAULT_MAX_ALLOCATED_STORAGE_GB = whole_default("dbMaxAllocatedStorageGb")
DEFAULT_DB_NAME = text_default("dbName")
DEFAULT_USERNAME = text_default("dbUsername")
DEFAULT_BACKUP_RETENTION_DAYS = whole_default("dbBackupRetentionDays")
DEFAULT_LOG_RETENTION_DAYS = whole_default("logRetentionDays")
DEFAULT_MAX_CONNECTIONS = whole_default("maxConnections")
# The engines each choice accepts (an instance's, a cluster's).
INSTANCE_ENGINE = "postgres"
CLUSTER_ENGINE = "aurora-postgresql"
# Only a new instance reads these; with an existing database they are an error, not silently ignored.
NEW_INSTANCE_FIELDS = ("subnet_ids", "postgres_major_version", "instance_class", "allocated_storage_gb",
                       "max_allocated_storage_gb", "username", "backup_retention_days", "multi_az",
                       "deletion_protection", "apply_immediately", "final_snapshot", "log_retention_days",
                       "manage_master_user_password", "region")


class DatabaseArgs(TypedDict, total=False):
    security_group_id: Required[pulumi.Input[str]]
    """The database's security group: a new instance is placed in it; an existing database's own
    group (one of those attached to it), into which the component adds an ingress rule from each of
    ``client_security_group_ids``."""
    client_security_group_ids: Sequence[pulumi.Input[str]]
    """Security groups allowed to the database's port (the pooler's and the migration job's): for each, an
    ingress rule into ``security_group_id`` and an egress rule out of it, as separate resources (a plain list:
    one pair per entry). Required with an existing database; with a new instance optional (the sample stack's
    network makes its own)."""
    db_name: str
    """The database the pooler and the migration job connect to (default ``app``). A new instance creates it;
    in an existing one it must exist."""
    max_connections: int
    """Postgres ``max_connections``: set in a new instance's parameter group (default 100); an existing
    database's value (``SHOW max_connections``), required, since the stack cannot read it at preview. The
    pool sizing and the connections alarm work from it."""
    existing_instance_identifier: str
    """Use this existing RDS PostgreSQL instance (not an Aurora member, not a read replica) instead of creating
    one; its endpoint, port and ARN are read at preview."""
    existing_cluster_identifier: str
    """Use this existing Aurora PostgreSQL cluster instead of creating an instance: its writer endpoint."""
    owner_secret_arn: pulumi.Input[str]
    """An existing database's owner secret: a Secrets Manager secret holding JSON with ``username`` and
    ``password`` (RDS's managed master user secret is one), which the migration task reads at run time.
    Default: the database's RDS-managed master user secret, when it has one."""
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """New instance, required: the private subnets of its subnet group (two AZs at least)."""
    postgres_major_version: int
    """New instance: the Postgres major version (default 17)."""
    instance_class: str
    """New instance: the RDS instance class (default ``db.t4g.small``)."""
    allocated_storage_gb: int
    """New instance: initial gp3 storage in GiB (default 20)."""
    max_allocated_storage_gb: int
    """New instance: the storage autoscaling ceiling in GiB; 0 turns autoscaling off (default 100)."""
    username: str
    """New instance: the master user, who owns the schema and runs the migrations (default ``lifeguard``)."""
    backup_retention_days: int
    """New instance: automated backup retention in days (default 7)."""
    multi_az: bool
    """New instance: run a standby in a second AZ (default true)."""
    deletion_protection: bool
    """New instance: RDS's deletion protection and Pulumi's ``protect`` (default true)."""
    apply_immediately: bool
    """New instance: apply modifications now rather than in the maintenance window (default false)."""
    final_snapshot: bool
    """New instance: take a final snapshot when it is deleted (default true)."""
    log_retention_days: int
    """New instance: retention of its ``postgresql`` log group, which the component creates (default 30)."""
    manage_master_user_password: bool
    """New instance: RDS keeps the master password in a secret of its own (``owner_secret_arn``), read by the
    migration task at run time, instead of a generated password in the stack's state (default false)."""
    region: str
    """New instance: the region, part of its identifier (default: the provider's)."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags for every taggable resource the component creates."""


@dataclass(frozen=True)
class ExistingDatabase:
    """What the stack reads of an existing database at preview (:func:`read_existing`)."""

    address: str
    port: int
    arn: str
    identifier: str
    managed_secret_arn: str | None
    security_groups: tuple[str, ...]


class Database(pulumi.ComponentResource):
    address: pulumi.Output[str]
    """The endpoint's DNS name (an Aurora cluster's writer endpoint): the name on its certificate, for
    verify-full. Usable once the rules from ``client_security_group_ids`` exist."""
    port: pulumi.Output[int]
    """The database's port (5432 for a new instance)."""
    arn: pulumi.Output[str]
    """The instance's or the cluster's ARN."""
    identifier: pulumi.Output[str]
    """The instance's or the cluster's identifier."""
    db_name: pulumi.Output[str]
    """The database the pooler and the migration job connect to."""
    max_connections: pulumi.Output[int]
    """Postgres ``max_connections`` the pool is sized from (the pooler's ``default_pool_size``)."""
    owner_secret_arn: pulumi.Output[Optional[str]]  # noqa: UP045 (the analyzer's only union)
    """The owner's secret (JSON ``username``/``password``) the migration task reads at run time: an existing
    database's, or a new instance's RDS-managed one; None for a new instance with a generated password."""

    def __init__(self, name: str, args: DatabaseArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:  # noqa: UP045 (the analyzer's only union)
        # Everything checked, and an existing database read, before anything is registered.
        existing = _existing(args)
        super().__init__(component_type(Database, "database"), name, None, opts)
        self._name = name
        self._tags = dict(args.get("tags", {}))
        db_name = args.get("db_name", DEFAULT_DB_NAME)
        self.password: pulumi.Output[str] | None = None
        """A new instance's generated master password (a Pulumi secret); None otherwise. For the direct URL
        secret (``lifeguard.aws.secrets``); not a schema output."""
        if existing is None:
            max_connections = args.get("max_connections", DEFAULT_MAX_CONNECTIONS)
            address, port, arn, identifier, owner_secret = self._new_instance(name, args, db_name, max_connections)
        else:
            max_connections = args["max_connections"]
            address, port, arn = (pulumi.Output.from_input(existing.address), pulumi.Output.from_input(existing.port),
                                  pulumi.Output.from_input(existing.arn))
            identifier = pulumi.Output.from_input(existing.identifier)
            owner_secret = pulumi.Output.from_input(args.get("owner_secret_arn") or existing.managed_secret_arn)
        rules = self._client_rules(args, port)
        # The clients' path is part of the address: what connects to it (the pooler's settings, hence its
        # tasks) waits for the rules, as it waits for the instance.
        self.address = pulumi.Output.all(address, *[rule.id for rule in rules]).apply(lambda values: str(values[0]))
        self.port = port
        self.arn = arn
        self.identifier = identifier
        self.db_name = pulumi.Output.from_input(db_name)
        self.max_connections = pulumi.Output.from_input(max_connections)
        self.owner_secret_arn = owner_secret
        self.register_outputs({"address": self.address, "port": self.port, "arn": self.arn})

    def _new_instance(
        self, name: str, args: DatabaseArgs, db_name: str, max_connections: int
    ) -> tuple[pulumi.Output[str], pulumi.Output[int], pulumi.Output[str], pulumi.Output[str],
               pulumi.Output[str | None]]:
        """Today's instance, resource for resource (deployed stacks keep theirs): the generated password
        only when RDS does not manage it."""
        child = pulumi.ResourceOptions(parent=self)
        major = args.get("postgres_major_version", DEFAULT_POSTGRES_MAJOR_VERSION)
        final_snapshot = args.get("final_snapshot", True)
        deletion_protection = args.get("deletion_protection", True)
        managed = args.get("manage_master_user_password", False)
        tags = self._tags or None
        username = args.get("username", DEFAULT_USERNAME)
        region = args.get("region") or aws.get_region().region

        password = None if managed else generated_password(f"{name}-password", child)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=args["subnet_ids"],
            description="Private subnets of the lifeguard database",
            tags=tags,
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            description=f"lifeguard: explicit max_connections ({max_connections}), TLS only",
            parameters=[
                # Static parameter: takes effect at the next reboot (the first boot on create).
                {"name": "max_connections", "value": str(max_connections), "apply_method": "pending-reboot"},
                {"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"},
                {"name": "password_encryption", "value": "scram-sha-256", "apply_method": "immediate"},
            ],
            tags=tags,
            opts=child,
        )
        final_snapshot_id: pulumi.Input[str] | None = None
        if final_snapshot:
            # Unique per stack life, so destroying a recreated stack does not collide with an old snapshot.
            suffix = random.RandomId(f"{name}-final-snapshot-suffix", byte_length=4, opts=child)
            final_snapshot_id = suffix.hex.apply(lambda hex_id: f"{name}-final-{hex_id}")
        # Named by the stack (unique per account and region) so that the log group RDS exports to can be
        # created first, with the stack's retention, and is deleted with the stack; left to RDS it would
        # have no retention and outlive `pulumi destroy`.
        identifier = stack_name(RDS_INSTANCE, name, region=region)
        postgres_logs = aws.cloudwatch.LogGroup(
            f"{name}-postgresql-logs",
            name=f"/aws/rds/instance/{identifier}/postgresql",
            retention_in_days=args.get("log_retention_days", DEFAULT_LOG_RETENTION_DAYS),
            tags=tags,
            opts=child,
        )
        max_storage = args.get("max_allocated_storage_gb", DEFAULT_MAX_ALLOCATED_STORAGE_GB)
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=identifier,
            engine=INSTANCE_ENGINE,
            engine_version=str(major),
            instance_class=args.get("instance_class", DEFAULT_INSTANCE_CLASS),
            allocated_storage=args.get("allocated_storage_gb", DEFAULT_ALLOCATED_STORAGE_GB),
            max_allocated_storage=max_storage or None,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=db_name,
            username=username,
            password=None if password is None else password.result,
            # Only when asked: an input a deployed stack's instance never had would be a change to it.
            manage_master_user_password=True if managed else None,
            parameter_group_name=parameters.name,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[args["security_group_id"]],
            publicly_accessible=False,
            multi_az=args.get("multi_az", True),
            deletion_protection=deletion_protection,
            apply_immediately=args.get("apply_immediately", False),
            backup_retention_period=args.get("backup_retention_days", DEFAULT_BACKUP_RETENTION_DAYS),
            copy_tags_to_snapshot=True,
            skip_final_snapshot=not final_snapshot,
            final_snapshot_identifier=final_snapshot_id,
            auto_minor_version_upgrade=True,
            # Changing postgresMajorVersion is then an in-place upgrade (with downtime), not an error.
            allow_major_version_upgrade=True,
            ca_cert_identifier=RDS_CA_IDENTIFIER,
            enabled_cloudwatch_logs_exports=["postgresql"],
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[postgres_logs],
                # As the NLB's (see the pooler): `pulumi destroy` of a protected stack stops before it
                # deletes anything, and a change that would replace the instance fails at preview.
                protect=deletion_protection,
                # Instances created before the identifier was explicit keep their generated one instead of
                # being replaced (a new, empty database); their log group stays RDS's, as before.
                ignore_changes=["identifier"],
            ),
        )
        if password is not None:
            self.password = pulumi.Output.secret(password.result)
        owner_secret: pulumi.Output[str | None] = (
            instance.master_user_secrets.apply(lambda secrets: secrets[0]["secret_arn"] if secrets else None)
            if managed else pulumi.Output.from_input(None)
        )
        return instance.address, instance.port, instance.arn, instance.identifier, owner_secret

    def _client_rules(self, args: DatabaseArgs, port: pulumi.Output[int]) -> list[pulumi.CustomResource]:
        """Both halves of each client's path to the database's port, each rule a resource of its own (so a
        group's other rules, managed elsewhere, are left alone)."""
        child = pulumi.ResourceOptions(parent=self)
        database_group = args["security_group_id"]
        rules: list[pulumi.CustomResource] = []
        for index, client in enumerate(args.get("client_security_group_ids", ())):
            label = f"{self._name}-client-{index}"
            rules.append(aws.vpc.SecurityGroupIngressRule(
                f"{label}-in", security_group_id=database_group, referenced_security_group_id=client,
                ip_protocol="tcp", from_port=port, to_port=port,
                description="lifeguard: Postgres from the pooler or the migration job", tags=self._tags or None,
                opts=child,
            ))
            rules.append(aws.vpc.SecurityGroupEgressRule(
                f"{label}-out", security_group_id=client, referenced_security_group_id=database_group,
                ip_protocol="tcp", from_port=port, to_port=port,
                description="lifeguard: to the database", tags=self._tags or None, opts=child,
            ))
        return rules


def _existing(args: DatabaseArgs) -> ExistingDatabase | None:
    """Check the choice and its fields; read an existing database (at preview). None: a new instance."""
    instance_id = args.get("existing_instance_identifier")
    cluster_id = args.get("existing_cluster_identifier")
    if not args.get("security_group_id"):
        raise ArgsError("security_group_id", "required: the database's security group (a new instance is placed "
                                             "in it; an existing database's own group gets the clients' rules)")
    _check_whole("max_connections", args.get("max_connections"), low=1)
    if not instance_id and not cluster_id:
        if not args.get("subnet_ids"):
            raise ArgsError("subnet_ids", "required for a new instance (private subnets in two AZs or more); or "
                                          "give existing_instance_identifier or existing_cluster_identifier")
        if args.get("owner_secret_arn"):
            raise ArgsError("owner_secret_arn", "only for an existing database; a new instance's owner secret is "
                                                "RDS's own with manage_master_user_password: true")
        return None
    choice = _choice(args)
    given = [field for field in NEW_INSTANCE_FIELDS if field in args]
    if given:
        raise ArgsError(given[0], f"{', '.join(given)}: only for a new instance; with {choice} leave "
                                  f"{'it' if len(given) == 1 else 'them'} out")
    if "max_connections" not in args:
        raise ArgsError("max_connections", f"required with {choice}: the database's own value (`SHOW "
                                           "max_connections`), which the stack cannot read at preview; the pool "
                                           "is sized from it")
    if not args.get("client_security_group_ids"):
        raise ArgsError("client_security_group_ids", f"required with {choice}: the pooler's and the migration "
                                                     "job's security groups, which get rules into the database's "
                                                     "group")
    return read_existing(args)


def _choice(args: DatabaseArgs) -> str:
    """Which existing database ``args`` name (exactly one)."""
    instance_id = args.get("existing_instance_identifier")
    cluster_id = args.get("existing_cluster_identifier")
    if instance_id and cluster_id:
        raise ArgsError("existing_cluster_identifier",
                        "give existing_instance_identifier (an RDS PostgreSQL instance) or existing_cluster_identifier "
                        "(an Aurora PostgreSQL cluster), not both; neither creates a new instance")
    if not instance_id and not cluster_id:
        raise ArgsError("existing_instance_identifier", "give existing_instance_identifier or "
                                                        "existing_cluster_identifier")
    return "existing_instance_identifier" if instance_id else "existing_cluster_identifier"


def read_existing(args: DatabaseArgs) -> ExistingDatabase:
    """Read the existing database ``args`` name and check what AWS answers: a PostgreSQL primary (not an Aurora
    member, not a replica), ``security_group_id`` attached to it (when known), an owner secret to read.

    :class:`Database` calls it; a program may call it first, before it creates anything (the sample stack does),
    since a refusal here comes from the database's state in AWS rather than from the arguments' shape.
    """
    choice = _choice(args)
    identifier = str(args.get(choice))
    existing = _read_instance(identifier) if choice == "existing_instance_identifier" else _read_cluster(identifier)
    group = args["security_group_id"]
    # Checked when known: rules added to another group would leave the clients timing out.
    if isinstance(group, str) and group not in existing.security_groups:
        raise ArgsError("security_group_id", f"{group} is not attached to {existing.identifier}; give one of its "
                                             f"security groups: {', '.join(existing.security_groups) or '(none)'}")
    if not args.get("owner_secret_arn") and existing.managed_secret_arn is None:
        raise ArgsError("owner_secret_arn", f"required: {existing.identifier} has no RDS-managed master user secret; "
                                            "give a Secrets Manager secret holding JSON with username and password "
                                            "of the database's owner (the migration task reads it at run time)")
    return existing


def _read_instance(identifier: str) -> ExistingDatabase:
    found = aws.rds.get_instance(db_instance_identifier=identifier)
    field = "existing_instance_identifier"
    if found.engine != INSTANCE_ENGINE:
        raise ArgsError(field, f"{identifier} runs {found.engine}, not {INSTANCE_ENGINE}; lifeguard needs RDS "
                               "PostgreSQL (an Aurora cluster: existing_cluster_identifier)")
    if found.db_cluster_identifier:
        raise ArgsError(field, f"{identifier} is a member of Aurora cluster {found.db_cluster_identifier}: give "
                               f"existing_cluster_identifier {found.db_cluster_identifier} (its writer endpoint "
                               "follows failovers)")
    if found.replicate_source_db:
        raise ArgsError(field, f"{identifier} is a read replica of {found.replicate_source_db}: give the primary, "
                               "which takes writes")
    return ExistingDatabase(address=found.address, port=int(found.port), arn=found.db_instance_arn,
                            identifier=identifier, managed_secret_arn=_managed_secret(found.master_user_secrets),
                            security_groups=tuple(found.vpc_security_groups))


def _read_cluster(identifier: str) -> ExistingDatabase:
    found = aws.rds.get_cluster(cluster_identifier=identifier)
    if found.engine != CLUSTER_ENGINE:
        raise ArgsError("existing_cluster_identifier", f"{identifier} runs {found.engine}, not {CLUSTER_ENGINE}; "
                                                       "lifeguard needs Aurora PostgreSQL")
    # The cluster endpoint is the writer's, and follows a failover to the new writer.
    return ExistingDatabase(address=found.endpoint, port=int(found.port), arn=found.arn, identifier=identifier,
                            managed_secret_arn=_managed_secret(found.master_user_secrets),
                            security_groups=tuple(found.vpc_security_group_ids))


def _managed_secret(secrets: Sequence[object]) -> str | None:
    """The RDS-managed master user secret's ARN (``GetInstanceMasterUserSecretResult`` or the cluster's)."""
    arns = [str(arn) for arn in (getattr(secret, "secret_arn", None) for secret in secrets or ()) if arn]
    return arns[0] if arns else None


def _check_whole(field: str, value: object, *, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgsError(field, f"must be a whole number of at least {low}, got {value!r}")
