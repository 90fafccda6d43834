"""The stack's typed configuration: read once, validated whole, before any resource exists.

Components never read ``pulumi.Config``; they get the frozen :class:`StackConfig` built here.
Every problem is reported with the config key to change (``lifeguard:<key>``), and the pool
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
from typing import Any, TypeVar, cast

import pulumi
import pulumi.runtime.config as runtime_config

from infra.types import API_ACCESS, ARCHITECTURES, AlarmThresholds, ApiAccess, Architecture
from pgbouncer.settings import IMAGE_SOCKET_DIR, PoolerSettings, SettingsError, Upstream
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
# Fargate's ceiling for the nofile ulimit.
FARGATE_MAX_NOFILE = 1_048_576
# A file-descriptor floor well above PgBouncer's needs at the default max_client_conn.
NOFILE_FLOOR = 65_535
# Postgres and RDS reserve these names; `pgbouncer` is PgBouncer's admin console database.
_RESERVED_DB_NAMES = frozenset({"postgres", "template0", "template1", "rdsadmin", "pgbouncer"})
_RDS_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Lower case: the migration job quotes the name, and Postgres folds unquoted names to lower case.
_APP_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# A standard topic: CloudWatch alarms cannot notify FIFO (.fifo) topics.
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A new VPC is cut into 2^4 equal blocks (private subnets first, public ones from the ninth), and AWS's
# smallest subnet is a /28.
SUBNET_SPLIT_BITS = 4
MAX_VPC_PREFIX = 28 - SUBNET_SPLIT_BITS
# The interface endpoints a new VPC gets with awsApiAccess: endpoints (one ENI per subnet each).
INTERFACE_ENDPOINTS = ("secretsmanager", "ecr.api", "ecr.dkr", "logs")
STATS_USER = "lifeguard_stats"
"""PgBouncer's read-only console user (``stats_users``) that the pooler task's metrics sidecar logs in as."""


@dataclass(frozen=True)
class KeySpec:
    """One config key: its name under ``lifeguard:``, its default as shown to users, its meaning."""

    name: str
    default: str
    meaning: str


# Where users read what each key means; the error for an unknown key points there.
REFERENCE_DOC = 'README.md, "Configuration reference" > "The AWS stack (`pulumi config`)"'

# The reference table of every key. The README's table (Configuration reference) is checked against it by the tests, and
# config the program does not know is refused (a typo would otherwise silently keep a default).
KEYS: tuple[KeySpec, ...] = (
    KeySpec("production", "true", "Marks a production stack: Multi-AZ and deletion protection default to "
            "on, a final database snapshot is kept, secrets get a 30-day recovery window, ECR repositories "
            "are not force-deleted, and with `awsApiAccess: nat` every AZ gets its own NAT gateway."),
    KeySpec("vpcCidr", "10.40.0.0/16", "CIDR of the VPC the stack creates, /16 up to the smallest that leaves "
            "each private subnet (a sixteenth of the VPC) the addresses the stack needs there: /23 with the "
            "defaults; `pulumi preview` shows the arithmetic when it is too small."),
    KeySpec("availabilityZoneCount", "2", "AZs the new VPC spans (2 to 6); one private subnet each. Without "
            "`availabilityZones`, the first ones by name."),
    KeySpec("availabilityZones", "(unset)", "JSON list of the AZ names the new VPC uses (2 to 6), e.g. "
            "`[\"ca-central-1a\", \"ca-central-1b\"]`: pick zones that offer Fargate, RDS and NLB (some do "
            "not, e.g. ca-central-1d or use1-az3). Replaces `availabilityZoneCount`."),
    KeySpec("awsApiAccess", "endpoints (new VPC), none (existing VPC)",
            "How private subnets reach AWS APIs: `endpoints` (interface endpoints for Secrets Manager, "
            "ECR and CloudWatch Logs plus an S3 gateway, no internet), `nat` (public subnets and NAT "
            "gateways) or `none` (an existing VPC that already has a route)."),
    KeySpec("existingVpcId", "(unset)", "Deploy into this VPC instead of creating one."),
    KeySpec("existingPrivateSubnetIds", "(unset)",
            "JSON list of private subnet IDs in `existingVpcId`, in at least two AZs."),
    KeySpec("postgresMajorVersion", "17", "RDS Postgres major version (14 to 18)."),
    KeySpec("dbInstanceClass", "db.t4g.small", "RDS instance class."),
    KeySpec("dbAllocatedStorageGb", "20", "Initial gp3 storage in GiB (20 to 65536)."),
    KeySpec("dbMaxAllocatedStorageGb", "100", "Storage autoscaling ceiling in GiB; 0 turns autoscaling off."),
    KeySpec("dbName", "app", "Database name, in both URLs."),
    KeySpec("dbUsername", "lifeguard", "The RDS master user: owns the schema; `DATABASE_URL_UNPOOLED` (the "
            "migration job) logs in as it."),
    KeySpec("dbAppUsername", "lifeguard_app", "The DML-only application role `DATABASE_URL` (the functions, "
            "through PgBouncer) logs in as; the migration job creates it (lower case, not `dbUsername`)."),
    KeySpec("dbBackupRetentionDays", "7", "Automated backup retention (1 to 35 days)."),
    KeySpec("dbMultiAz", "= production", "Run a standby in a second AZ."),
    KeySpec("dbApplyImmediately", "= not production", "Apply database changes (instance class, storage, "
            "parameter group, version) during `pulumi up` instead of in the next maintenance window; on "
            "outside production, where waiting days for a change is surprising. Some changes restart the "
            "instance."),
    KeySpec("deletionProtection", "= production", "Turn on deletion protection for the database and the NLB "
            "(turn it off and `pulumi up` before `pulumi destroy`)."),
    KeySpec("maxConnections", "100", "Postgres `max_connections`, set in the parameter group; the pool "
            "size is derived from it. Must fit the instance class's memory."),
    KeySpec("reservedConnections", "5", "Connections kept out of the pool budget for superusers and "
            "RDS's own sessions (RDS reserves 3 + 2)."),
    KeySpec("migrationHeadroom", "2", "Direct connections kept for the migration job."),
    KeySpec("poolerMinTasks", "2", "Fewest PgBouncer tasks (at least 2, spread across AZs)."),
    KeySpec("poolerMaxTasks", "4", "Most PgBouncer tasks under CPU autoscaling; divides the pool budget."),
    KeySpec("deploymentMaximumPercent", "200", "ECS `maximumPercent` for rolling deploys (100 to 200); "
            "old and new tasks share the budget while both run."),
    KeySpec("poolerCpu", "512", "Fargate CPU units per PgBouncer task: 256, 512 or 1024. PgBouncer is one "
            "single-threaded process, so a task never uses more than one vCPU: with more, its CPU would stay "
            "below `poolerCpuTargetPercent` and `alarmPoolerCpuPercent` however busy it is, and the "
            "autoscaler and the alarm would never act. Scale with `poolerMaxTasks` instead."),
    KeySpec("poolerMemoryMb", "1024", "Fargate memory (MiB) per PgBouncer task; must be valid for the CPU."),
    KeySpec("poolerCpuTargetPercent", "60", "Average CPU the autoscaler aims for (10 to 90)."),
    KeySpec("maxClientConn", "10000", "PgBouncer `max_client_conn` per task; the `nofile` ulimit follows it."),
    KeySpec("queryWaitTimeoutSeconds", "20", "PgBouncer `query_wait_timeout`; must be below "
            "`functionTimeoutSeconds` so a queued function gets a pooler error, not a platform timeout."),
    KeySpec("poolerStopTimeoutSeconds", "120", "Seconds ECS waits after SIGINT before SIGKILL (2 to 120)."),
    KeySpec("deregistrationDelaySeconds", "30", "NLB deregistration delay before a task is stopped (0 to 3600)."),
    KeySpec("containerArchitecture", "x86_64", "CPU architecture of the PgBouncer and migration images "
            "and tasks: `x86_64` or `arm64`."),
    KeySpec("functionArchitecture", "x86_64", "Lambda architecture, and the wheels packaged: `x86_64` or `arm64`."),
    KeySpec("functionTimeoutSeconds", "30", "Lambda timeout (1 to 900)."),
    KeySpec("functionMemoryMb", "256", "Lambda memory (128 to 10240)."),
    KeySpec("functionReservedConcurrency", "-1", "Reserved concurrency per function, which caps the "
            "clients each can open; -1 reserves none. Lambda keeps 10 of the account's concurrency unreserved, "
            "so in a new account (a limit of 10) any reservation fails: raise the account's quota first, then "
            "set e.g. 50."),
    KeySpec("demoData", "= not production", "Apply the demo-data migrations (`NNNN_seed_demo...sql`: the "
            "sample orgs and invoices); off in production. The migration job gets it as `LIFEGUARD_DEMO_DATA`. "
            "The smoke test's own org (`0004_smoke_org.sql`) is created either way."),
    KeySpec("migrationCpu", "256", "Fargate CPU units for the migration task."),
    KeySpec("migrationMemoryMb", "512", "Fargate memory (MiB) for the migration task."),
    KeySpec("logRetentionDays", "30", "Retention of every log group the stack creates (a CloudWatch value)."),
    KeySpec("alarmEmail", "(unset)", "Create an SNS topic for the pool alarms and subscribe this address "
            "(AWS mails a confirmation link first). Not together with `alarmTopicArn`."),
    KeySpec("alarmTopicArn", "(unset)", "An existing standard SNS topic the pool alarms notify on alarm and "
            "on recovery. Without either key the alarms only change state (dashboard, console)."),
    KeySpec("alarmClientsWaiting", "1", "Clients queued for a server connection on the busiest PgBouncer task "
            "that count towards the clients-waiting alarm (1 to 100000)."),
    KeySpec("alarmClientsWaitingMinutes", "3", "Consecutive minutes with at least `alarmClientsWaiting` queued "
            "clients before that alarm fires (1 to 60): a sustained queue, not a burst."),
    KeySpec("alarmMaxWaitSeconds", "1", "Wait of the oldest queued client that raises the max-wait alarm (2 "
            "minutes running; 0.1 to 3600, fractions allowed); must be below `queryWaitTimeoutSeconds`, where "
            "PgBouncer fails the client."),
    KeySpec("alarmPoolerCpuPercent", "80", "Average PgBouncer task CPU over 5 minutes that raises the CPU "
            "alarm; must be above `poolerCpuTargetPercent`, which autoscaling holds in normal operation."),
    KeySpec("alarmDbConnectionsPercent", "80", "RDS `DatabaseConnections` as a share of `maxConnections` "
            "(1 to 100) that raises the connections alarm (3 minutes running)."),
)
KEY_NAMES = frozenset(spec.name for spec in KEYS)


class ConfigError(pulumi.RunError):
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

    @property
    def uses_existing_vpc(self) -> bool:
        return self.existing_vpc_id is not None


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
    """Where the pool alarms notify and when they fire (see infra/components/observability.py)."""

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


@dataclass(frozen=True)
class MigrationConfig:
    cpu: int
    memory_mb: int
    architecture: Architecture
    demo_data: bool
    """Whether the job applies the demo-data migrations (``migrator.files.DEMO_DATA_ENV``)."""


@dataclass(frozen=True)
class StackConfig:
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
    """Reads raw config strings and records every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{PROJECT}:{key}: {message}")

    def has_problem(self, key: str) -> bool:
        return any(problem.startswith(f"{PROJECT}:{key}: ") for problem in self.problems)

    def _raw(self, key: str) -> Any:
        assert key in KEY_NAMES, f"config key {key} is missing from KEYS"
        return self._values.get(key)

    def is_set(self, key: str) -> bool:
        return self._raw(key) not in (None, "")

    def _parse(self, key: str, default: T, parse: Callable[[Any], T], what: str) -> T:
        raw = self._raw(key)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except (TypeError, ValueError):
            self.problem(key, f"must be {what}, got {raw!r}")
            return default

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        def parse(raw: Any) -> int:
            if isinstance(raw, bool):
                raise TypeError(raw)
            if isinstance(raw, int):
                return raw
            text = str(raw).strip()
            if not re.fullmatch(r"-?\d+", text):
                raise ValueError(text)
            return int(text)

        value = self._parse(key, default, parse, "a whole number")
        if not low <= value <= high:
            self.problem(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        def parse(raw: Any) -> bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "false"):
                return text == "true"
            raise ValueError(text)

        return self._parse(key, default, parse, "true or false")

    def string(self, key: str, default: str) -> str:
        return self._parse(key, default, lambda raw: str(raw).strip(), "a string")

    def number(self, key: str, default: float, low: float, high: float) -> float:
        def parse(raw: Any) -> float:
            if isinstance(raw, bool):
                raise TypeError(raw)
            value = float(str(raw).strip())
            if not math.isfinite(value):
                raise ValueError(raw)
            return value

        value = self._parse(key, default, parse, "a number")
        if not low <= value <= high:
            self.problem(key, f"must be between {low:g} and {high:g}, got {value:g}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key, "") or None

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        def parse(raw: Any) -> tuple[str, ...]:
            items = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError(raw)
            return tuple(items)

        return self._parse(key, (), parse, 'a JSON list of strings, e.g. ["subnet-0a...", "subnet-0b..."]')


def config_values() -> dict[str, Any]:
    """Every ``lifeguard:`` key the engine passed to this program, by short name."""
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    return {key[len(prefix):]: value for key, value in merged.items() if key.startswith(prefix)}


def load(values: Mapping[str, Any] | None = None) -> StackConfig:
    """Read and validate the whole configuration; raise :class:`ConfigError` listing every problem."""
    if values is None:
        values = config_values()
    read = _Reader(values)
    unknown = sorted(set(values) - KEY_NAMES)
    for key in unknown:
        read.problem(key, "is not a lifeguard setting (a typo would silently keep the default); "
                          f"see {REFERENCE_DOC}")

    production = read.boolean("production", True)
    log_retention = read.integer("logRetentionDays", 30, 1, 3653)
    if log_retention not in LOG_RETENTION_DAYS:
        read.problem("logRetentionDays", f"must be one of CloudWatch's values {LOG_RETENTION_DAYS}, "
                                         f"got {log_retention}")

    network = _network(read)
    database = _database(read, production)
    functions = _functions(read)
    pooler = _pooler(read, database, functions)
    migration = MigrationConfig(
        cpu=read.integer("migrationCpu", 256, 256, 16384),
        memory_mb=read.integer("migrationMemoryMb", 512, 512, 122880),
        architecture=pooler.architecture,
        demo_data=read.boolean("demoData", not production),
    )
    _check_fargate_size(read, "migrationCpu", "migrationMemoryMb", migration.cpu, migration.memory_mb)
    if network.existing_vpc_id is None and not read.has_problem("vpcCidr"):
        _check_vpc_size(read, network, pooler)
    alarms = _alarms(read, pooler)

    if read.problems:
        raise ConfigError(read.problems)
    return StackConfig(
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
    api_access = cast(ApiAccess, read.choice("awsApiAccess", "none" if existing_vpc else "endpoints",
                                             API_ACCESS))
    cidr = read.string("vpcCidr", "10.40.0.0/16")
    az_count = read.integer("availabilityZoneCount", 2, 2, 6)
    zones = read.string_list("availabilityZones")
    if zones:
        if existing_vpc is not None:
            read.problem("availabilityZones", "is only for a new VPC; with existingVpcId the subnets decide the AZs")
        if not 2 <= len(zones) <= 6:
            read.problem("availabilityZones", f"must name 2 to 6 AZs, got {len(zones)}")
        if len(set(zones)) != len(zones):
            read.problem("availabilityZones", "lists an AZ twice")
        if read.is_set("availabilityZoneCount") and az_count != len(zones):
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


def _database(read: _Reader, production: bool) -> DatabaseConfig:
    db_name = read.string("dbName", "app")
    username = read.string("dbUsername", "lifeguard")
    if not _RDS_IDENTIFIER.match(db_name) or db_name.lower() in _RESERVED_DB_NAMES:
        read.problem("dbName", "must start with a letter, hold only letters, digits and '_' (at most 63), "
                               f"and not be one of {', '.join(sorted(_RESERVED_DB_NAMES))}; got {db_name!r}")
    if not _RDS_IDENTIFIER.match(username) or username.lower().startswith(("rds", "pg_")):
        read.problem("dbUsername", "must start with a letter, hold only letters, digits and '_' (at most "
                                   f"63), and not start with 'rds' or 'pg_'; got {username!r}")
    app_username = read.string("dbAppUsername", "lifeguard_app")
    if not _APP_ROLE.match(app_username) or app_username.startswith(("rds", "pg_")):
        read.problem("dbAppUsername", "must start with a lower-case letter, hold only lower-case letters, digits "
                                      f"and '_' (at most 63), and not start with 'rds' or 'pg_'; got {app_username!r}")
    elif app_username == username.lower():
        read.problem("dbAppUsername", f"must differ from dbUsername ({username!r}): the functions' role gets DML "
                                      "only, the master user owns the schema")
    elif app_username == STATS_USER:
        read.problem("dbAppUsername", f"{STATS_USER!r} is PgBouncer's console user; choose another name")
    instance_class = read.string("dbInstanceClass", "db.t4g.small")
    if not _INSTANCE_CLASS.match(instance_class):
        read.problem("dbInstanceClass", f"must look like db.t4g.small, got {instance_class!r}")
    allocated = read.integer("dbAllocatedStorageGb", 20, 20, 65536)
    max_allocated = read.integer("dbMaxAllocatedStorageGb", 100, 0, 65536)
    if max_allocated and max_allocated < allocated:
        read.problem("dbMaxAllocatedStorageGb",
                     f"must be 0 (no autoscaling) or at least dbAllocatedStorageGb ({allocated}), "
                     f"got {max_allocated}")
    return DatabaseConfig(
        postgres_major_version=read.integer("postgresMajorVersion", 17, 14, 18),
        instance_class=instance_class,
        allocated_storage_gb=allocated,
        max_allocated_storage_gb=max_allocated,
        db_name=db_name,
        username=username,
        app_username=app_username,
        backup_retention_days=read.integer("dbBackupRetentionDays", 7, 1, 35),
        multi_az=read.boolean("dbMultiAz", production),
        deletion_protection=read.boolean("deletionProtection", production),
        apply_immediately=read.boolean("dbApplyImmediately", not production),
        max_connections=read.integer("maxConnections", 100, 1, 262143),
        reserved_connections=read.integer("reservedConnections", 5, 0, 262143),
        migration_headroom=read.integer("migrationHeadroom", 2, 0, 262143),
    )


def _functions(read: _Reader) -> FunctionsConfig:
    architecture = cast(Architecture, read.choice("functionArchitecture", "x86_64", ARCHITECTURES))
    # -1 by default: a reservation fails in accounts still at Lambda's initial limit of 10.
    reserved = read.integer("functionReservedConcurrency", -1, -1, 1_000_000)
    if reserved == 0:
        read.problem("functionReservedConcurrency", "0 would stop both functions from running; "
                                                    "use -1 for no reservation or a positive number")
    return FunctionsConfig(
        architecture=architecture,
        timeout_s=read.integer("functionTimeoutSeconds", 30, 1, 900),
        memory_mb=read.integer("functionMemoryMb", 256, 128, 10240),
        reserved_concurrency=None if reserved == -1 else reserved,
    )


def _pooler(read: _Reader, database: DatabaseConfig, functions: FunctionsConfig) -> PoolerConfig:
    min_tasks = read.integer("poolerMinTasks", 2, 0, 1000)
    if min_tasks < 2:
        read.problem("poolerMinTasks", f"must be at least 2 (one per AZ, so losing an AZ or a task does "
                                       f"not cut every function off the database), got {min_tasks}")
    max_tasks = read.integer("poolerMaxTasks", 4, 0, 1000)
    if max_tasks < min_tasks:
        read.problem("poolerMaxTasks", f"must be at least poolerMinTasks ({min_tasks}), got {max_tasks}")
    max_percent = read.integer("deploymentMaximumPercent", 200, 100, 200)
    cpu = read.integer("poolerCpu", 512, 256, 16384)
    memory = read.integer("poolerMemoryMb", 1024, 512, 122880)
    if cpu > POOLER_MAX_CPU:
        read.problem("poolerCpu", f"must be at most {POOLER_MAX_CPU} (one vCPU), got {cpu}: PgBouncer runs one "
                                  "single-threaded process, so a task's CPU could never pass "
                                  f"{100 * POOLER_MAX_CPU // cpu}% and the autoscaler and the CPU alarm would never "
                                  "fire; add tasks with poolerMaxTasks instead")
    else:
        _check_fargate_size(read, "poolerCpu", "poolerMemoryMb", cpu, memory)
    max_client_conn = read.integer("maxClientConn", 10000, 1, FARGATE_MAX_NOFILE)
    query_wait = read.integer("queryWaitTimeoutSeconds", 20, 1, 3600)
    if query_wait >= functions.timeout_s:
        read.problem("queryWaitTimeoutSeconds",
                     f"must be below functionTimeoutSeconds ({functions.timeout_s}), got {query_wait}: a "
                     "function waiting for a server connection must get PgBouncer's error before Lambda "
                     "kills it. Lower queryWaitTimeoutSeconds or raise functionTimeoutSeconds.")
    if functions.reserved_concurrency is not None and min_tasks >= 1:
        clients = 2 * functions.reserved_concurrency
        if clients > max_client_conn * min_tasks:
            read.problem("maxClientConn",
                         f"{min_tasks} tasks x maxClientConn {max_client_conn} cannot hold the {clients} "
                         "clients two functions at functionReservedConcurrency "
                         f"{functions.reserved_concurrency} may open; raise maxClientConn or poolerMinTasks")

    pool_size = 0
    if min_tasks >= 1 and max_tasks >= min_tasks and not any(
        problem.split(":")[1] in ("maxConnections", "reservedConnections", "migrationHeadroom",
                                  "deploymentMaximumPercent")
        for problem in read.problems
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
        cpu_target_percent=read.integer("poolerCpuTargetPercent", 60, 10, 90),
        max_client_conn=max_client_conn,
        query_wait_timeout_s=query_wait,
        stop_timeout_s=read.integer("poolerStopTimeoutSeconds", 120, 2, 120),
        deregistration_delay_s=read.integer("deregistrationDelaySeconds", 30, 0, 3600),
        architecture=cast(Architecture, read.choice("containerArchitecture", "x86_64", ARCHITECTURES)),
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
    if email is not None and not _EMAIL.match(email):
        read.problem("alarmEmail", f"must be an e-mail address, got {email!r}")
    if topic_arn is not None and not _SNS_TOPIC_ARN.match(topic_arn):
        read.problem("alarmTopicArn", "must be a standard SNS topic ARN like "
                                      f"arn:aws:sns:eu-west-1:123456789012:alerts (not FIFO), got {topic_arn!r}")
    max_wait = read.number("alarmMaxWaitSeconds", 1.0, 0.1, 3600)
    # Compared only with a valid other key, so a bad value is reported once, under its own key.
    if max_wait >= pooler.query_wait_timeout_s and not read.has_problem("queryWaitTimeoutSeconds"):
        read.problem("alarmMaxWaitSeconds",
                     f"must be below queryWaitTimeoutSeconds ({pooler.query_wait_timeout_s}), got {max_wait:g}: "
                     "PgBouncer fails a client that waited that long, so the wait never reaches the threshold")
    cpu = read.integer("alarmPoolerCpuPercent", 80, 1, 100)
    if cpu <= pooler.cpu_target_percent and not read.has_problem("poolerCpuTargetPercent"):
        read.problem("alarmPoolerCpuPercent",
                     f"must be above poolerCpuTargetPercent ({pooler.cpu_target_percent}), got {cpu}: "
                     "autoscaling keeps the tasks at that level, so the alarm would fire in normal operation")
    # The bounds above are within what AlarmThresholds.validate() accepts, so the component
    # cannot refuse these after other resources exist.
    thresholds = AlarmThresholds(
        clients_waiting=read.integer("alarmClientsWaiting", 1, 1, 100_000),
        clients_waiting_minutes=read.integer("alarmClientsWaitingMinutes", 3, 1, 60),
        max_wait_seconds=max_wait,
        pooler_cpu_percent=float(cpu),
        db_connections_ratio=read.integer("alarmDbConnectionsPercent", 80, 1, 100) / 100,
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
    # infra/components/network.py cuts the VPC into 16 blocks: a private subnet is one of them.
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
