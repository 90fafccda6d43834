"""The stack's typed configuration: read once, validated whole, before any resource exists.

Components never read ``pulumi.Config``; they get the frozen :class:`InfraConfig` built here.
Each key's kind, default and bounds come from the one table in :mod:`lifeguard.aws.keys`; the checks that
span keys are here. Every problem is reported with the config key to change (``lifeguard:<key>``), and the pool
sizing arithmetic runs here too, so a stack whose numbers do not fit fails at ``pulumi preview``
before anything is created.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pulumi
import pulumi.runtime.config as runtime_config

from lambdas.contract import FUNCTIONS, NODE_FUNCTIONS
from lifeguard.aws.build_context import project_dir
from lifeguard.aws.keys import (
    FARGATE_MAX_NOFILE,
    KEY_NAMES,
    KEYS_BY_NAME,
    REFERENCE_DOC,
    ChoiceKey,
    Derived,
    FlagKey,
    Key,
    ListKey,
    NumberKey,
    TextKey,
    WholeKey,
)
from lifeguard.aws.types import ALARM_EMAIL, AlarmThresholds, ApiAccess, Architecture
from migrator.bookkeeping import parse_table
from migrator.contract import MAX_APP_ROLE_NAME
from migrator.errors import MigratorConfigError
from pgbouncer.contract import IMAGE_SOCKET_DIR, STATS_USER
from pgbouncer.settings import PoolerSettings, SettingsError, Upstream
from pgbouncer.sizing import PoolBudget, SizingError
from pgbouncer.versions import PINNED

PROJECT = "lifeguard"

# The values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
# Fargate's CPU units -> allowed memory sizes (MiB).
FARGATE_SIZES: Mapping[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
# One vCPU: all a single PgBouncer process can use, so 100% task CPU stays reachable for the
# autoscaling target and the CPU alarm.
POOLER_MAX_CPU = 1024
# A file-descriptor floor well above PgBouncer's needs at the default max_client_conn.
NOFILE_FLOOR = 65_535
# Postgres and RDS reserve these names; `pgbouncer` is PgBouncer's admin console database.
_RESERVED_DB_NAMES = frozenset({"postgres", "template0", "template1", "rdsadmin", "pgbouncer"})
_RDS_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Lower case: the migration job quotes the name, and Postgres folds unquoted names to lower case.
_APP_ROLE = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_APP_ROLE_NAME - 1}}}$")
_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
# RDS: 1 to 63 letters, digits or hyphens, a letter first, no "--", no hyphen last.
_EXISTING_DB_ID = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-\d:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
# Keys only a new instance reads: with an existing database they are refused, not silently ignored.
NEW_INSTANCE_KEYS = ("postgresMajorVersion", "dbInstanceClass", "dbAllocatedStorageGb", "dbMaxAllocatedStorageGb",
                     "dbUsername", "dbBackupRetentionDays", "dbMultiAz", "dbApplyImmediately", "maxConnections",
                     "manageMasterUserPassword")
EXISTING_DATABASE_KEYS = ("existingDatabaseSecurityGroupId", "existingDatabaseMaxConnections",
                          "existingDatabaseOwnerSecretArn")
# A standard topic: CloudWatch alarms cannot notify FIFO (.fifo) topics.
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}$")
# A new VPC is cut into 2^4 equal blocks (private subnets first, public ones from the ninth), and AWS's
# smallest subnet is a /28.
SUBNET_SPLIT_BITS = 4
MAX_VPC_PREFIX = 28 - SUBNET_SPLIT_BITS
# An image in ECR, pinned by digest or named by tag (the task's execution role is granted that repository).
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-\d)\.amazonaws\.com/"
    r"(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)(?:@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)
SAMPLE_FUNCTION_COUNT = len(FUNCTIONS) + len(NODE_FUNCTIONS)
# The interface endpoints a new VPC gets with awsApiAccess: endpoints (one ENI per subnet each).
INTERFACE_ENDPOINTS = ("secretsmanager", "ecr.api", "ecr.dkr", "logs")


class InfraConfigError(pulumi.RunError):
    """The stack configuration is invalid. Each problem names the ``lifeguard:`` key to change.

    A ``RunError`` so the CLI prints the message without a Python traceback.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"the stack configuration is invalid; nothing was created:\n{lines}")


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    availability_zone_count: int
    availability_zones: tuple[str, ...]
    """Named by config (``availabilityZones``); empty: the first ``availability_zone_count`` by name."""
    api_access: ApiAccess
    existing_vpc_id: str | None
    existing_private_subnet_ids: tuple[str, ...]



@dataclass(frozen=True)
class DatabaseConfig:
    postgres_major_version: int
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    db_name: str
    username: str
    """The master user: owns the schema, runs the migrations (direct URL)."""
    app_username: str
    """The DML-only application role: the functions' login through PgBouncer (pooled URL)."""
    backup_retention_days: int
    multi_az: bool
    deletion_protection: bool
    apply_immediately: bool
    """RDS ``apply_immediately``: otherwise modifications wait for the maintenance window."""
    max_connections: int
    reserved_connections: int
    migration_headroom: int
    scram_iterations: int | None = None
    """``scramIterations`` when set; ``None``: the stack keeps its count (``deployed.app_scram_iterations``)."""
    app_password_rotation: int = 0
    """``appPasswordRotation``: password rotations started (:mod:`lifeguard.aws.rotation`)."""
    app_password_switched: int = 0
    """``appPasswordSwitched``: the rotation ``DATABASE_URL`` uses."""
    existing_instance_id: str | None = None
    """``existingDatabaseInstanceId``: an existing RDS PostgreSQL instance instead of a new one."""
    existing_cluster_id: str | None = None
    """``existingAuroraClusterId``: an existing Aurora PostgreSQL cluster instead of a new instance."""
    existing_security_group_id: str | None = None
    existing_owner_secret_arn: str | None = None
    """``None`` with an existing database: its RDS-managed master user secret."""
    manage_master_user_password: bool = False

    @property
    def existing(self) -> str | None:
        """The existing database's identifier (instance or cluster); ``None``: the stack creates an instance."""
        return self.existing_instance_id or self.existing_cluster_id


@dataclass(frozen=True)
class PoolerConfig:
    min_tasks: int
    max_tasks: int
    deployment_maximum_percent: int
    deployment_minimum_healthy_percent: int
    cpu: int
    memory_mb: int
    cpu_target_percent: int
    max_client_conn: int
    query_wait_timeout_s: int
    stop_timeout_s: int
    deregistration_delay_s: int
    architecture: Architecture
    pool_size: int
    """``default_pool_size`` per task, from :class:`pgbouncer.sizing.PoolBudget`."""
    nofile: int
    """The container's ``nofile`` ulimit (soft = hard)."""
    settings: PoolerSettings
    """The stack's PgBouncer settings, made and validated once here, for a placeholder upstream host:
    the RDS endpoint exists only once the database does, and the pooler component fills it in."""


def pooler_settings(
    db_name: str, host: str, pool_size: int, max_client_conn: int, query_wait_timeout_s: int
) -> PoolerSettings:
    """The one place the stack's PgBouncer settings are made; everything else is the renderer's default."""
    return PoolerSettings(
        upstream=Upstream(host=host, dbname=db_name),
        default_pool_size=pool_size,
        max_client_conn=max_client_conn,
        query_wait_timeout=query_wait_timeout_s,
        version=PINNED,
        # The metrics sidecar reads the console as this user, over the socket in the shared volume.
        stats_users=(STATS_USER,),
        unix_socket_dir=IMAGE_SOCKET_DIR,
    )


@dataclass(frozen=True)
class AlarmsConfig:
    """Where the pool alarms notify and when they fire (see lifeguard/aws/observability.py)."""

    email: str | None
    """Subscribe this address to a topic the stack creates."""
    topic_arn: str | None
    """Or notify this existing topic."""
    thresholds: AlarmThresholds


@dataclass(frozen=True)
class FunctionsConfig:
    architecture: Architecture
    timeout_s: int
    memory_mb: int
    reserved_concurrency: int | None
    """``None`` when unreserved (config value -1)."""
    sample_functions: bool = True
    """``sampleFunctions``: the stack deploys the sample functions."""

    @property
    def attached_count(self) -> int:
        """How many functions the stack itself attaches to the pooler (the checks below count these)."""
        return SAMPLE_FUNCTION_COUNT if self.sample_functions else 0


@dataclass(frozen=True)
class MigrationConfig:
    cpu: int
    memory_mb: int
    architecture: Architecture
    demo_data: bool
    """Whether the job applies the demo-data migrations (``migrator.files.DEMO_DATA_ENV``)."""
    image_folder: Path | None = None
    """``migrationImage`` as a folder (absolute): the user's Dockerfile, built by the stack."""
    image_uri: str | None = None
    """``migrationImage`` as an ECR image URI: run as it is."""
    command: tuple[str, ...] = ()
    """``migrationCommand``: run through the wrapper; empty: the image's own command."""
    bookkeeping_tables: tuple[str, ...] = ()
    """``migrationBookkeepingTables``, checked (``migrator.bookkeeping.parse_table``)."""


@dataclass(frozen=True)
class InfraConfig:
    production: bool
    log_retention_days: int
    network: NetworkConfig
    database: DatabaseConfig
    pooler: PoolerConfig
    functions: FunctionsConfig
    migration: MigrationConfig
    alarms: AlarmsConfig

    @property
    def secret_recovery_window_days(self) -> int:
        # 0 deletes at once, so a dev stack can be destroyed and recreated under the same names.
        return 30 if self.production else 0


# The upstream host of the settings template, until the component fills in the RDS endpoint.
_PLACEHOLDER_HOST = "database.invalid"

# What PoolerConfig holds while load() goes on collecting problems after the pooler's numbers
# failed (it raises before returning, so nothing ever renders it).
_UNBUILT_SETTINGS = PoolerSettings(upstream=Upstream(host=_PLACEHOLDER_HOST, dbname="unbuilt"), default_pool_size=1)

T = TypeVar("T")


class _Reader:
    """Reads each key as ``lifeguard.aws.keys`` describes it (kind, default, bounds), once, and records every
    problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        self._read: dict[str, object] = {}
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{PROJECT}:{key}: {message}")

    def given(self, key: str) -> bool:
        """Whether the stack's config sets ``key`` (rather than leaving it to its default)."""
        return self._values.get(key) not in (None, "")

    def has_problem(self, key: str) -> bool:
        return any(problem.startswith(f"{PROJECT}:{key}: ") for problem in self.problems)

    def value(self, key: str) -> object:
        """The key's value; read once, so a problem is recorded once however often it is asked for."""
        if key not in self._read:
            self._read[key] = self._read_key(KEYS_BY_NAME[key])
        return self._read[key]

    def integer(self, key: str) -> int:
        return _typed(key, self.value(key), int)

    def number(self, key: str) -> float:
        return _typed(key, self.value(key), float)

    def boolean(self, key: str) -> bool:
        return _typed(key, self.value(key), bool)

    def string(self, key: str) -> str:
        return _typed(key, self.value(key), str)

    def optional_string(self, key: str) -> str | None:
        value = self.value(key)
        return None if value is None else _typed(key, value, str)

    def string_list(self, key: str) -> tuple[str, ...]:
        return _typed(key, self.value(key), tuple)

    def _default(self, default: T | Derived[T]) -> T:
        if isinstance(default, Derived):
            return default.rule(self.value(default.follows))
        return default

    def _read_key(self, spec: Key) -> object:
        # Bounds are checked on given values: a fixed default is within them (a test checks the table),
        # a derived one is checked where it comes from (availabilityZones for availabilityZoneCount).
        given = self.given(spec.name)
        if isinstance(spec, WholeKey):
            whole = self._parse(spec.name, self._default(spec.default), _parse_whole, "a whole number")
            if given and not spec.low <= whole <= spec.high:
                self.problem(spec.name, f"must be between {spec.low} and {spec.high}, got {whole}")
            return whole
        if isinstance(spec, NumberKey):
            number = self._parse(spec.name, spec.default, _parse_number, "a number")
            if given and not spec.low <= number <= spec.high:
                self.problem(spec.name, f"must be between {spec.low:g} and {spec.high:g}, got {number:g}")
            return number
        if isinstance(spec, FlagKey):
            return self._parse(spec.name, self._default(spec.default), _parse_flag, "true or false")
        if isinstance(spec, TextKey):
            text = self._parse(spec.name, spec.default, lambda raw: str(raw).strip(), "a string")
            return (text or None) if spec.default is None else text
        if isinstance(spec, ChoiceKey):
            default = self._default(spec.default)
            choice = self._parse(spec.name, default, lambda raw: str(raw).strip(), "a string")
            if choice not in spec.choices:
                self.problem(spec.name, f"must be one of {', '.join(spec.choices)}; got {choice!r}")
                return default
            return choice
        if isinstance(spec, ListKey):
            empty: tuple[str, ...] = ()
            return self._parse(spec.name, empty, _parse_string_list,
                               'a JSON list of strings, e.g. ["subnet-0a...", "subnet-0b..."]')
        raise TypeError(f"no reader for {type(spec).__name__} ({spec.name})")

    def _parse(self, key: str, default: T, parse: Callable[[Any], T], what: str) -> T:
        raw = self._values.get(key)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except (TypeError, ValueError):
            self.problem(key, f"must be {what}, got {raw!r}")
            return default


def migration_image(value: str, base: Path, base_name: str) -> Path | str:
    """``migrationImage`` (``MigrationJobArgs.image``): a folder holding a Dockerfile (absolute, or relative to
    ``base``, which the message calls ``base_name``), resolved; or an ECR image URI as given. ``ValueError`` (its
    message says what to give) otherwise."""
    if ECR_IMAGE.match(value):
        return value
    folder = Path(value) if Path(value).is_absolute() else base / value
    if (folder / "Dockerfile").is_file():
        return folder.resolve()
    raise ValueError(
        f"{value!r} is neither a folder holding a Dockerfile (relative to {base_name}, {base}) nor an ECR image URI "
        "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<digest> or :<tag>)")


def migration_command_problem(command: Sequence[str]) -> str | None:
    """What is wrong with a migration command (``migrationCommand``, ``MigrationJobArgs.command``), or None."""
    if any(not isinstance(word, str) or not word for word in command):
        return "holds an empty word; give each argument as one non-empty string"
    if tuple(command[1:3]) == ("-m", "migrator"):
        return ("give your tool's command alone (e.g. [\"alembic\", \"upgrade\", \"head\"]): the job runs it "
                "through the wrapper, python3 -m migrator run --")
    return None


def _migration_image(read: _Reader) -> tuple[Path | None, str | None]:
    """``migrationImage``: (folder, None), (None, URI) or (None, None) when unset."""
    value = (read.optional_string("migrationImage") or "").strip()
    if not value:
        return None, None
    try:
        image = migration_image(value, project_dir(), "the folder of Pulumi.yaml")
    except ValueError as exc:
        read.problem("migrationImage", str(exc))
        return None, None
    return (image, None) if isinstance(image, Path) else (None, image)


def _migration_command(read: _Reader) -> tuple[str, ...]:
    command = read.string_list("migrationCommand")
    problem = migration_command_problem(command)
    if problem is not None:
        read.problem("migrationCommand", problem)
    return command


def _bookkeeping_tables(read: _Reader) -> tuple[str, ...]:
    tables = read.string_list("migrationBookkeepingTables")
    for name in tables:
        try:
            parse_table(name, "migrationBookkeepingTables")
        except MigratorConfigError as exc:
            read.problem("migrationBookkeepingTables", str(exc).split(": ", 1)[1])
    return tables


def _typed(key: str, value: object, kind: type[T]) -> T:
    # A programming error (a reader method for the wrong kind of key), not a config problem.
    if not isinstance(value, kind):
        raise TypeError(f"{key} holds {type(value).__name__}, not {kind.__name__}: "
                        "see its kind in lifeguard/aws/keys.py")
    return value


def _parse_whole(raw: Any) -> int:
    if isinstance(raw, bool):
        raise TypeError(raw)
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(text)
    return int(text)


def _parse_number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise TypeError(raw)
    value = float(str(raw).strip())
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _parse_flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(text)


def _parse_string_list(raw: Any) -> tuple[str, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(raw)
    return tuple(items)


def config_values() -> dict[str, Any]:
    """Every ``lifeguard:`` key the engine passed to this program, by short name."""
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    return {key[len(prefix):]: value for key, value in merged.items() if key.startswith(prefix)}


def load(values: Mapping[str, Any] | None = None) -> InfraConfig:
    """Read and validate the whole configuration; raise :class:`InfraConfigError` listing every problem."""
    if values is None:
        values = config_values()
    read = _Reader(values)
    unknown = sorted(set(values) - KEY_NAMES)
    for key in unknown:
        read.problem(key, "is not a lifeguard setting (a typo would silently keep the default); "
                          f"see {REFERENCE_DOC}")

    production = read.boolean("production")
    log_retention = read.integer("logRetentionDays")
    if log_retention not in LOG_RETENTION_DAYS:
        read.problem("logRetentionDays", f"must be one of CloudWatch's values {LOG_RETENTION_DAYS}, "
                                         f"got {log_retention}")

    network = _network(read)
    database = _database(read)
    functions = _functions(read)
    pooler = _pooler(read, database, functions)
    image_folder, image_uri = _migration_image(read)
    migration = MigrationConfig(
        cpu=read.integer("migrationCpu"),
        memory_mb=read.integer("migrationMemoryMb"),
        architecture=pooler.architecture,
        demo_data=read.boolean("demoData"),
        image_folder=image_folder,
        image_uri=image_uri,
        command=_migration_command(read),
        bookkeeping_tables=_bookkeeping_tables(read),
    )
    _check_fargate_size(read, "migrationCpu", "migrationMemoryMb", migration.cpu, migration.memory_mb)
    if network.existing_vpc_id is None and not read.has_problem("vpcCidr"):
        _check_vpc_size(read, network, pooler)
    alarms = _alarms(read, pooler)

    if read.problems:
        raise InfraConfigError(read.problems)
    return InfraConfig(
        production=production,
        log_retention_days=log_retention,
        network=network,
        database=database,
        pooler=pooler,
        functions=functions,
        migration=migration,
        alarms=alarms,
    )


def _network(read: _Reader) -> NetworkConfig:
    existing_vpc = read.optional_string("existingVpcId")
    subnets = read.string_list("existingPrivateSubnetIds")
    api_access = cast(ApiAccess, read.string("awsApiAccess"))
    cidr = read.string("vpcCidr")
    az_count = read.integer("availabilityZoneCount")
    zones = read.string_list("availabilityZones")
    if zones:
        if existing_vpc is not None:
            read.problem("availabilityZones", "is only for a new VPC; with existingVpcId the subnets decide the AZs")
        if not 2 <= len(zones) <= 6:
            read.problem("availabilityZones", f"must name 2 to 6 AZs, got {len(zones)}")
        if len(set(zones)) != len(zones):
            read.problem("availabilityZones", "lists an AZ twice")
        # The count follows the list unless it is set to another number.
        if az_count != len(zones):
            read.problem("availabilityZoneCount", f"is {az_count} but availabilityZones names {len(zones)}; "
                                                  "unset availabilityZoneCount")
        az_count = len(zones)
    if existing_vpc is not None:
        if not _VPC_ID.match(existing_vpc):
            read.problem("existingVpcId", f"must look like vpc-0123456789abcdef0, got {existing_vpc!r}")
        if len(subnets) < 2:
            read.problem("existingPrivateSubnetIds",
                         f"needs at least two private subnets in different AZs, got {len(subnets)}")
        for subnet in subnets:
            if not _SUBNET_ID.match(subnet):
                read.problem("existingPrivateSubnetIds", f"{subnet!r} is not a subnet ID")
        if len(set(subnets)) != len(subnets):
            read.problem("existingPrivateSubnetIds", "lists a subnet twice")
        if api_access != "none":
            read.problem("awsApiAccess", "must be `none` with existingVpcId: the stack does not add "
                                         "endpoints or NAT gateways to a VPC it does not own")
    else:
        if subnets:
            read.problem("existingPrivateSubnetIds", "is only used together with existingVpcId")
        if api_access == "none":
            read.problem("awsApiAccess", "`none` is only for an existing VPC; a new VPC needs "
                                         "`endpoints` or `nat` to reach Secrets Manager, ECR and Logs")
        try:
            network = ipaddress.ip_network(cidr)
            if network.version != 4 or not 16 <= network.prefixlen <= MAX_VPC_PREFIX:
                raise ValueError(cidr)
        except ValueError:
            read.problem("vpcCidr", f"must be an IPv4 CIDR from /16 to /{MAX_VPC_PREFIX}, got {cidr!r}")
    return NetworkConfig(
        vpc_cidr=cidr,
        availability_zone_count=az_count,
        availability_zones=zones,
        api_access=api_access,
        existing_vpc_id=existing_vpc,
        existing_private_subnet_ids=subnets,
    )


def _database(read: _Reader) -> DatabaseConfig:
    db_name = read.string("dbName")
    username = read.string("dbUsername")
    if not _RDS_IDENTIFIER.match(db_name) or db_name.lower() in _RESERVED_DB_NAMES:
        read.problem("dbName", "must start with a letter, hold only letters, digits and '_' (at most 63), "
                               f"and not be one of {', '.join(sorted(_RESERVED_DB_NAMES))}; got {db_name!r}")
    if not _RDS_IDENTIFIER.match(username) or username.lower().startswith(("rds", "pg_")):
        read.problem("dbUsername", "must start with a letter, hold only letters, digits and '_' (at most "
                                   f"63), and not start with 'rds' or 'pg_'; got {username!r}")
    app_username = read.string("dbAppUsername")
    if not _APP_ROLE.match(app_username) or app_username.startswith(("rds", "pg_")):
        read.problem("dbAppUsername", "must start with a lower-case letter, hold only lower-case letters, digits "
                                      f"and '_' (at most {MAX_APP_ROLE_NAME}: its rotation partner adds '_b'), and "
                                      f"not start with 'rds' or 'pg_'; got {app_username!r}")
    elif app_username == username.lower():
        read.problem("dbAppUsername", f"must differ from dbUsername ({username!r}): the functions' role gets DML "
                                      "only, the master user owns the schema")
    elif app_username == STATS_USER:
        read.problem("dbAppUsername", f"{STATS_USER!r} is PgBouncer's console user; choose another name")
    instance_class = read.string("dbInstanceClass")
    if not _INSTANCE_CLASS.match(instance_class):
        read.problem("dbInstanceClass", f"must look like db.t4g.small, got {instance_class!r}")
    allocated = read.integer("dbAllocatedStorageGb")
    max_allocated = read.integer("dbMaxAllocatedStorageGb")
    if max_allocated and max_allocated < allocated:
        read.problem("dbMaxAllocatedStorageGb",
                     f"must be 0 (no autoscaling) or at least dbAllocatedStorageGb ({allocated}), "
                     f"got {max_allocated}")
    existing = _existing_database(read)
    max_connections = read.integer("existingDatabaseMaxConnections" if existing else "maxConnections")
    return DatabaseConfig(
        postgres_major_version=read.integer("postgresMajorVersion"),
        instance_class=instance_class,
        allocated_storage_gb=allocated,
        max_allocated_storage_gb=max_allocated,
        db_name=db_name,
        username=username,
        app_username=app_username,
        backup_retention_days=read.integer("dbBackupRetentionDays"),
        multi_az=read.boolean("dbMultiAz"),
        deletion_protection=read.boolean("deletionProtection"),
        apply_immediately=read.boolean("dbApplyImmediately"),
        max_connections=max_connections,
        reserved_connections=read.integer("reservedConnections"),
        migration_headroom=read.integer("migrationHeadroom"),
        scram_iterations=read.integer("scramIterations") if read.given("scramIterations") else None,
        app_password_rotation=read.integer("appPasswordRotation"),
        app_password_switched=read.integer("appPasswordSwitched"),
        existing_instance_id=read.optional_string("existingDatabaseInstanceId"),
        existing_cluster_id=read.optional_string("existingAuroraClusterId"),
        existing_security_group_id=read.optional_string("existingDatabaseSecurityGroupId"),
        existing_owner_secret_arn=read.optional_string("existingDatabaseOwnerSecretArn"),
        manage_master_user_password=read.boolean("manageMasterUserPassword"),
    )


def _existing_database(read: _Reader) -> str | None:
    """Check the existing-database keys together; the key that chose one (or None: a new instance)."""
    instance = read.optional_string("existingDatabaseInstanceId")
    cluster = read.optional_string("existingAuroraClusterId")
    max_connections = read.integer("existingDatabaseMaxConnections")  # its bounds, whatever the choice
    if instance is not None and cluster is not None:
        read.problem("existingAuroraClusterId", "set existingDatabaseInstanceId (an RDS PostgreSQL instance) or "
                                                "existingAuroraClusterId (an Aurora PostgreSQL cluster), not both")
    chosen = "existingDatabaseInstanceId" if instance is not None else "existingAuroraClusterId" if cluster else None
    if chosen is None:
        for key in EXISTING_DATABASE_KEYS:
            if read.given(key):
                read.problem(key, "is only used with existingDatabaseInstanceId or existingAuroraClusterId; unset it "
                                  "(the stack creates its own instance)")
        return None
    identifier = instance or cluster or ""
    if not _EXISTING_DB_ID.match(identifier):
        read.problem(chosen, "must be an RDS identifier (a letter, then letters, digits and single hyphens, at most "
                             f"63, not ending in a hyphen), got {identifier!r}")
    if read.optional_string("existingVpcId") is None:
        read.problem(chosen, "needs existingVpcId and existingPrivateSubnetIds (the database's VPC and private "
                             "subnets that reach it): a VPC the stack creates cannot reach an existing database")
    for key in NEW_INSTANCE_KEYS:
        if read.given(key):
            read.problem(key, f"is for a new instance; with {chosen} unset it"
                         + (" and set existingDatabaseMaxConnections to the database's own value"
                            if key == "maxConnections" else ""))
    group = read.optional_string("existingDatabaseSecurityGroupId")
    if group is None:
        read.problem("existingDatabaseSecurityGroupId", f"is required with {chosen}: one of the database's security "
                                                        "groups, which gets the pooler's and the migration job's rules")
    elif not _SECURITY_GROUP_ID.match(group):
        read.problem("existingDatabaseSecurityGroupId", f"must look like sg-0123456789abcdef0, got {group!r}")
    if max_connections < 1 and not read.has_problem("existingDatabaseMaxConnections"):
        read.problem("existingDatabaseMaxConnections", f"is required with {chosen}: the database's max_connections "
                                                       "(SHOW max_connections), which sizes the pool")
    secret = read.optional_string("existingDatabaseOwnerSecretArn")
    if secret is not None and not _SECRET_ARN.match(secret):
        read.problem("existingDatabaseOwnerSecretArn",
                     "must be a Secrets Manager secret ARN like "
                     f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf, got {secret!r}")
    return chosen


def _functions(read: _Reader) -> FunctionsConfig:
    architecture = cast(Architecture, read.string("functionArchitecture"))
    # -1 by default: a reservation fails in accounts still at Lambda's initial limit of 10.
    reserved = read.integer("functionReservedConcurrency")
    if reserved == 0:
        read.problem("functionReservedConcurrency", "0 would stop the sample functions from running; "
                                                    "use -1 for no reservation or a positive number")
    return FunctionsConfig(
        architecture=architecture,
        timeout_s=read.integer("functionTimeoutSeconds"),
        memory_mb=read.integer("functionMemoryMb"),
        reserved_concurrency=None if reserved == -1 else reserved,
        sample_functions=read.boolean("sampleFunctions"),
    )


def pooler_config(values: Mapping[str, Any]) -> PoolerConfig:
    """The pooler's sizing and PgBouncer settings from these keys alone (what the ``Pooler`` component is
    given): the checks :func:`load` makes on them, less those against the sample functions' keys, and
    the database keys' checks on ``dbName`` and the pool budget. Raises :class:`InfraConfigError`."""
    unknown = sorted(set(values) - KEY_NAMES)
    if unknown:
        raise TypeError(f"not lifeguard config keys: {', '.join(unknown)}")
    read = _Reader(values)
    log_retention = read.integer("logRetentionDays")
    if log_retention not in LOG_RETENTION_DAYS:
        read.problem("logRetentionDays", f"must be one of CloudWatch's values {LOG_RETENTION_DAYS}, "
                                         f"got {log_retention}")
    pooler = _pooler(read, _database(read), None)
    if read.problems:
        raise InfraConfigError(read.problems)
    return pooler


def _pooler(read: _Reader, database: DatabaseConfig, functions: FunctionsConfig | None) -> PoolerConfig:
    """``functions`` None: the pooler serves functions this stack does not define (the Pooler component alone)."""
    min_tasks = read.integer("poolerMinTasks")
    if min_tasks < 2:
        read.problem("poolerMinTasks", f"must be at least 2 (one per AZ, so losing an AZ or a task does "
                                       f"not cut every function off the database), got {min_tasks}")
    max_tasks = read.integer("poolerMaxTasks")
    if max_tasks < min_tasks:
        read.problem("poolerMaxTasks", f"must be at least poolerMinTasks ({min_tasks}), got {max_tasks}")
    max_percent = read.integer("deploymentMaximumPercent")
    cpu = read.integer("poolerCpu")
    memory = read.integer("poolerMemoryMb")
    if cpu > POOLER_MAX_CPU:
        read.problem("poolerCpu", f"must be at most {POOLER_MAX_CPU} (one vCPU), got {cpu}: PgBouncer runs one "
                                  "single-threaded process, so a task's CPU could never pass "
                                  f"{100 * POOLER_MAX_CPU // cpu}% and the autoscaler and the CPU alarm would never "
                                  "fire; add tasks with poolerMaxTasks instead")
    else:
        _check_fargate_size(read, "poolerCpu", "poolerMemoryMb", cpu, memory)
    max_client_conn = read.integer("maxClientConn")
    query_wait = read.integer("queryWaitTimeoutSeconds")
    # Checked against the functions the stack attaches itself; a PooledClient checks its own functions' timeout.
    if functions is not None and functions.attached_count and query_wait >= functions.timeout_s:
        read.problem("queryWaitTimeoutSeconds",
                     f"must be below functionTimeoutSeconds ({functions.timeout_s}), got {query_wait}: a "
                     "function waiting for a server connection must get PgBouncer's error before Lambda "
                     "kills it. Lower queryWaitTimeoutSeconds or raise functionTimeoutSeconds.")
    if (functions is not None and functions.attached_count and functions.reserved_concurrency is not None
            and min_tasks >= 1):
        clients = functions.attached_count * functions.reserved_concurrency
        if clients > max_client_conn * min_tasks:
            read.problem("maxClientConn",
                         f"{min_tasks} tasks x maxClientConn {max_client_conn} cannot hold the {clients} "
                         f"clients the {functions.attached_count} sample functions at functionReservedConcurrency "
                         f"{functions.reserved_concurrency} may open; raise maxClientConn or poolerMinTasks")

    pool_size = 0
    if min_tasks >= 1 and max_tasks >= min_tasks and not any(
        read.has_problem(key)
        for key in ("maxConnections", "existingDatabaseMaxConnections", "reservedConnections", "migrationHeadroom",
                    "deploymentMaximumPercent")
    ):
        budget = PoolBudget(
            max_connections=database.max_connections,
            reserved_connections=database.reserved_connections,
            migration_headroom=database.migration_headroom,
            max_tasks=max_tasks,
            deployment_maximum_percent=max_percent,
        )
        try:
            pool_size = budget.default_pool_size()
        except SizingError as exc:
            # The sizing message already names maxConnections, poolerMaxTasks, ... (these keys).
            read.problems.append(f"{PROJECT} pool sizing: {exc}")

    settings: PoolerSettings | None = None
    if pool_size >= 1:
        try:
            settings = pooler_settings(database.db_name, _PLACEHOLDER_HOST, pool_size, max_client_conn, query_wait)
        except SettingsError as exc:
            read.problems.append(f"{PROJECT} PgBouncer settings: {exc}")
    nofile = NOFILE_FLOOR if settings is None else max(NOFILE_FLOOR, settings.required_open_files())
    if nofile > FARGATE_MAX_NOFILE:
        read.problem("maxClientConn", f"needs {nofile} file descriptors, above Fargate's {FARGATE_MAX_NOFILE}")

    # ECS needs room for at least one extra task to replace tasks without first stopping one.
    surge_fits = min_tasks * max_percent // 100 > min_tasks
    return PoolerConfig(
        min_tasks=min_tasks,
        max_tasks=max_tasks,
        deployment_maximum_percent=max_percent,
        deployment_minimum_healthy_percent=100 if surge_fits else 50,
        cpu=cpu,
        memory_mb=memory,
        cpu_target_percent=read.integer("poolerCpuTargetPercent"),
        max_client_conn=max_client_conn,
        query_wait_timeout_s=query_wait,
        stop_timeout_s=read.integer("poolerStopTimeoutSeconds"),
        deregistration_delay_s=read.integer("deregistrationDelaySeconds"),
        architecture=cast(Architecture, read.string("containerArchitecture")),
        pool_size=pool_size,
        nofile=nofile,
        # Without settings there are problems, and load() raises before anything reads these.
        settings=settings or _UNBUILT_SETTINGS,
    )


def _alarms(read: _Reader, pooler: PoolerConfig) -> AlarmsConfig:
    email = read.optional_string("alarmEmail")
    topic_arn = read.optional_string("alarmTopicArn")
    if email is not None and topic_arn is not None:
        read.problem("alarmEmail", "set alarmEmail (the stack creates a topic and subscribes it) or "
                                   "alarmTopicArn (an existing topic), not both")
    if email is not None and not ALARM_EMAIL.match(email):
        read.problem("alarmEmail", f"must be an e-mail address, got {email!r}")
    if topic_arn is not None and not _SNS_TOPIC_ARN.match(topic_arn):
        read.problem("alarmTopicArn", "must be a standard SNS topic ARN like "
                                      f"arn:aws:sns:eu-west-1:123456789012:alerts (not FIFO), got {topic_arn!r}")
    max_wait = read.number("alarmMaxWaitSeconds")
    # Compared only with a valid other key, so a bad value is reported once, under its own key.
    if max_wait >= pooler.query_wait_timeout_s and not read.has_problem("queryWaitTimeoutSeconds"):
        read.problem("alarmMaxWaitSeconds",
                     f"must be below queryWaitTimeoutSeconds ({pooler.query_wait_timeout_s}), got {max_wait:g}: "
                     "PgBouncer fails a client that waited that long, so the wait never reaches the threshold")
    cpu = read.integer("alarmPoolerCpuPercent")
    if cpu <= pooler.cpu_target_percent and not read.has_problem("poolerCpuTargetPercent"):
        read.problem("alarmPoolerCpuPercent",
                     f"must be above poolerCpuTargetPercent ({pooler.cpu_target_percent}), got {cpu}: "
                     "autoscaling keeps the tasks at that level, so the alarm would fire in normal operation")
    # The bounds above are within what AlarmThresholds.validate() accepts, so the component
    # cannot refuse these after other resources exist.
    thresholds = AlarmThresholds(
        clients_waiting=read.integer("alarmClientsWaiting"),
        clients_waiting_minutes=read.integer("alarmClientsWaitingMinutes"),
        max_wait_seconds=max_wait,
        pooler_cpu_percent=float(cpu),
        db_connections_ratio=read.integer("alarmDbConnectionsPercent") / 100,
    )
    return AlarmsConfig(email=email, topic_arn=topic_arn, thresholds=thresholds)


def private_subnet_needs(network: NetworkConfig, pooler: PoolerConfig) -> dict[str, int]:
    """Addresses one private subnet of a new VPC needs, by consumer."""
    zones = max(2, network.availability_zone_count)
    tasks_alive = math.ceil(max(1, pooler.max_tasks) * pooler.deployment_maximum_percent / 100)
    return {
        "AWS reserves": 5,
        # Internal NLBs with AWS-chosen addresses need 8 free ones per subnet to be created and to scale.
        "NLB free": 8,
        "interface endpoints": len(INTERFACE_ENDPOINTS) if network.api_access == "endpoints" else 0,
        "RDS (primary or standby, and a replacement during changes)": 2,
        "Lambda ENIs (one per subnet and security group, one more while Lambda replaces it)": 2,
        # When one AZ is lost, its tasks start in the others: the survivors hold them all.
        f"PgBouncer tasks (poolerMaxTasks {pooler.max_tasks} x {pooler.deployment_maximum_percent}% during a "
        f"deploy, over {zones - 1} AZ(s) when one is lost)": math.ceil(tasks_alive / (zones - 1)),
        "migration task": 1,
    }


def _check_vpc_size(read: _Reader, network: NetworkConfig, pooler: PoolerConfig) -> None:
    needs = private_subnet_needs(network, pooler)
    needed = sum(needs.values())
    prefix = ipaddress.ip_network(network.vpc_cidr).prefixlen
    # lifeguard/aws/network.py cuts the VPC into 16 blocks: a private subnet is one of them.
    subnet_prefix = prefix + SUBNET_SPLIT_BITS
    size = 2 ** (32 - subnet_prefix)
    if size >= needed:
        return
    largest_prefix = 32 - SUBNET_SPLIT_BITS - math.ceil(math.log2(needed))
    terms = " + ".join(f"{count} {what}" for what, count in needs.items() if count)
    fix = (f"use a /{largest_prefix} or larger, e.g. "
           f"{ipaddress.ip_network(network.vpc_cidr).supernet(new_prefix=largest_prefix)}, or lower poolerMaxTasks"
           if largest_prefix >= 16 else "lower poolerMaxTasks or deploymentMaximumPercent, or add AZs")
    read.problem("vpcCidr", f"{network.vpc_cidr} is too small: each private subnet is a sixteenth of the VPC, "
                            f"/{subnet_prefix} = {size} addresses, but needs {needed} ({terms}); {fix}")


def _check_fargate_size(read: _Reader, cpu_key: str, memory_key: str, cpu: int, memory: int) -> None:
    if cpu not in FARGATE_SIZES:
        read.problem(cpu_key, f"must be one of Fargate's CPU sizes {tuple(FARGATE_SIZES)}, got {cpu}")
    elif memory not in FARGATE_SIZES[cpu]:
        sizes = FARGATE_SIZES[cpu]
        read.problem(memory_key, f"Fargate allows {sizes[0]} to {sizes[-1]} MiB (in its steps) with "
                                 f"{cpu_key} {cpu}, got {memory}")
