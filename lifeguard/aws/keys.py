"""Every ``lifeguard:`` config key of the AWS stack: its kind, typed default, bounds and meaning.

The one table of keys: ``lifeguard.aws.config``'s reader takes each key's default and bounds from here (no
second default anywhere), the README's configuration table is generated from it
(``python -m lifeguard.aws.keys README.md``; a test fails when the two differ), and ``lifeguard bench``
sizes with its pooler defaults. Standard library only: the local install, where ``lifeguard
bench`` runs, has no Pulumi.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from lifeguard.aws.types import API_ACCESS, ARCHITECTURES
from pgbouncer.scram import APP_ITERATIONS, ITERATIONS, MAX_ITERATIONS, MIN_APP_ITERATIONS

# Where users read what each key means; the error for an unknown key points there.
REFERENCE_DOC = 'README.md, "Configuration reference" > "The AWS stack (`pulumi config`)"'
# Fargate's ceiling for the nofile ulimit (maxClientConn's bound: every client is a descriptor).
FARGATE_MAX_NOFILE = 1_048_576
# Postgres' ceiling for max_connections (and so for the connections kept out of the pool).
MAX_PG_CONNECTIONS = 262_143

T = TypeVar("T")


@dataclass(frozen=True)
class Derived(Generic[T]):
    """A default that follows another key: ``rule`` maps that key's value to this one's."""

    shown: str
    """How the reference table shows it."""
    follows: str
    rule: Callable[[Any], T]


AS_PRODUCTION = Derived[bool]("= production", "production", lambda production: bool(production))
NOT_PRODUCTION = Derived[bool]("= not production", "production", lambda production: not production)


@dataclass(frozen=True)
class Key:
    """One key under ``lifeguard:``; each kind below says how it is read."""

    name: str
    meaning: str

    @property
    def shown_default(self) -> str:
        """The default as the reference table shows it."""
        # Each kind but ListKey has a ``default``; None (or none at all) is an unset key.
        default = getattr(self, "default", None)
        return "(unset)" if default is None else _shown(default)


def _shown(default: object) -> str:
    if isinstance(default, Derived):
        return default.shown
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


@dataclass(frozen=True)
class WholeKey(Key):
    """A whole number from ``low`` to ``high``."""

    default: int | Derived[int]
    low: int
    high: int


@dataclass(frozen=True)
class NumberKey(Key):
    """A finite number from ``low`` to ``high``, fractions allowed."""

    default: float
    low: float
    high: float


@dataclass(frozen=True)
class FlagKey(Key):
    """``true`` or ``false``."""

    default: bool | Derived[bool]


@dataclass(frozen=True)
class TextKey(Key):
    """A string; ``None``: unset unless given."""

    default: str | None


@dataclass(frozen=True)
class ChoiceKey(Key):
    """One of ``choices``."""

    choices: tuple[str, ...]
    default: str | Derived[str]


@dataclass(frozen=True)
class ListKey(Key):
    """A JSON list of strings; empty unless given."""


# Config the program does not know is refused (a typo would otherwise silently keep a default).
KEYS: tuple[Key, ...] = (
    FlagKey("production", default=True, meaning=(
        "Marks a production stack: Multi-AZ and deletion protection default to on, a final database "
        "snapshot is kept, secrets get a 30-day recovery window, "
        "and with `awsApiAccess: nat` every AZ gets its own NAT gateway.")),
    TextKey("vpcCidr", default="10.40.0.0/16", meaning=(
        "CIDR of the VPC the stack creates, /16 up to the smallest that leaves each private subnet (a "
        "sixteenth of the VPC) the addresses the stack needs there: /23 with the defaults; `pulumi "
        "preview` shows the arithmetic when it is too small.")),
    WholeKey("availabilityZoneCount", low=2, high=6, default=Derived(
        "`2`, or as many as `availabilityZones` names", "availabilityZones", lambda zones: len(zones) or 2,
    ), meaning=(
        "AZs the new VPC spans (2 to 6); one private subnet each. Without `availabilityZones`, the first "
        "ones by name.")),
    ListKey("availabilityZones", meaning=(
        'JSON list of the AZ names the new VPC uses (2 to 6), e.g. `["ca-central-1a", "ca-central-1b"]`: '
        'pick zones that offer Fargate, RDS and NLB (some do not, e.g. ca-central-1d or use1-az3). '
        'Replaces `availabilityZoneCount`.')),
    ChoiceKey("awsApiAccess", choices=API_ACCESS, default=Derived(
        "endpoints (new VPC), none (existing VPC)", "existingVpcId", lambda vpc: "none" if vpc else "endpoints",
    ), meaning=(
        "How private subnets reach AWS APIs: `endpoints` (interface endpoints for Secrets Manager, ECR "
        "and CloudWatch Logs plus an S3 gateway, no internet), `nat` (public subnets and NAT gateways) or"
        " `none` (an existing VPC that already has a route).")),
    TextKey("existingVpcId", default=None, meaning=(
        "Deploy into this VPC instead of creating one.")),
    ListKey("existingPrivateSubnetIds", meaning=(
        "JSON list of private subnet IDs in `existingVpcId`, in at least two AZs.")),
    WholeKey("postgresMajorVersion", default=17, low=14, high=18, meaning=(
        "RDS Postgres major version (14 to 18). On a deployed stack, a preview refuses a downgrade, and an "
        "upgrade unless `dbApplyImmediately` is on for that deploy.")),
    TextKey("dbInstanceClass", default="db.t4g.small", meaning=(
        "RDS instance class.")),
    WholeKey("dbAllocatedStorageGb", default=20, low=20, high=65536, meaning=(
        "Initial gp3 storage in GiB (20 to 65536).")),
    WholeKey("dbMaxAllocatedStorageGb", default=100, low=0, high=65536, meaning=(
        "Storage autoscaling ceiling in GiB; 0 turns autoscaling off.")),
    TextKey("dbName", default="app", meaning=(
        "Database name, in both URLs. Fixed once deployed: RDS would replace the instance with an empty "
        "one, so a preview refuses a change.")),
    TextKey("dbUsername", default="lifeguard", meaning=(
        "The RDS master user: owns the schema; `DATABASE_URL_UNPOOLED` (the migration job) logs in as it. "
        "Fixed once deployed, like `dbName`.")),
    TextKey("dbAppUsername", default="lifeguard_app", meaning=(
        "The DML-only application role `DATABASE_URL` (the functions, through PgBouncer) logs in as; the "
        "migration job creates it (lower case, not `dbUsername`).")),
    WholeKey("scramIterations", default=APP_ITERATIONS, low=MIN_APP_ITERATIONS, high=MAX_ITERATIONS, meaning=(
        f"SCRAM iteration count of the application role's verifier, for its generated password only "
        f"(docs/roles.md: the count guards a guessable password, and costs every cold start). The default "
        f"applies to a new stack; a stack deployed before this key keeps {ITERATIONS} (Postgres' own), and "
        "a deployed stack keeps the count it has until this key is set: then `pulumi up` and, at once, the "
        "migration job (PgBouncer and Postgres must hold the same verifier; docs/roles.md gives the order).")),
    WholeKey("appPasswordRotation", default=0, low=0, high=2**31 - 1, meaning=(
        "Password rotations started: raising it by one gives the login role `DATABASE_URL` does not use a new "
        "password, in the pooler's secret beside the other's; the migration job then sets it in Postgres. "
        "One at a time, each switched before the next (docs/roles.md#rotating-the-password).")),
    WholeKey("appPasswordSwitched", default=0, low=0, high=2**31 - 1, meaning=(
        "The rotation `DATABASE_URL` uses: set it to `appPasswordRotation` after the migration job that "
        "followed that rotation's `pulumi up` succeeded, then `pulumi up`. A preview refuses an order that "
        "would fail logins, and a switch the migration job has not recorded (in the stack's SSM parameter) as "
        "set in Postgres.")),
    WholeKey("dbBackupRetentionDays", default=7, low=1, high=35, meaning=(
        "Automated backup retention (1 to 35 days).")),
    FlagKey("dbMultiAz", default=AS_PRODUCTION, meaning=(
        "Run a standby in a second AZ.")),
    FlagKey("dbApplyImmediately", default=NOT_PRODUCTION, meaning=(
        "Apply database changes (instance class, storage, parameter group, version) during `pulumi up` "
        "instead of in the next maintenance window; on outside production, where waiting days for a "
        "change is surprising. Some changes restart the instance.")),
    FlagKey("deletionProtection", default=AS_PRODUCTION, meaning=(
        "Turn on deletion protection for the database and the NLB (AWS's, and Pulumi's `protect`, so "
        "`pulumi destroy`, or a change that would replace either, stops before anything is deleted) and "
        "keep the ECR repositories' images (turn it off and `pulumi up` before `pulumi destroy`).")),
    WholeKey("maxConnections", default=100, low=1, high=MAX_PG_CONNECTIONS, meaning=(
        "Postgres `max_connections`, set in the parameter group; the pool size is derived from it. Must "
        "fit the instance class's memory.")),
    WholeKey("reservedConnections", default=5, low=0, high=MAX_PG_CONNECTIONS, meaning=(
        "Connections kept out of the pool budget for superusers and RDS's own sessions (RDS reserves 3 + "
        "2).")),
    WholeKey("migrationHeadroom", default=2, low=0, high=MAX_PG_CONNECTIONS, meaning=(
        "Direct connections kept for the migration job.")),
    TextKey("existingDatabaseInstanceId", default=None, meaning=(
        "Use this existing RDS PostgreSQL instance (its identifier) instead of creating one: the pooler and the "
        "migration job connect to its endpoint, read at preview. Needs `existingVpcId` (the database's VPC), "
        "`existingDatabaseSecurityGroupId` and `existingDatabaseMaxConnections`; the keys of a new instance "
        "(`postgresMajorVersion`, `dbInstanceClass`, `maxConnections`, ...) are refused with it. Not on a stack "
        "that created its instance (a preview refuses: it would delete that instance).")),
    TextKey("existingAuroraClusterId", default=None, meaning=(
        "Use this existing Aurora PostgreSQL cluster instead of creating an instance: its writer endpoint, which "
        "follows a failover; the connections alarm watches the writer. As `existingDatabaseInstanceId` "
        "otherwise (not both).")),
    TextKey("existingDatabaseSecurityGroupId", default=None, meaning=(
        "With an existing database: one of its security groups; the stack adds rules into it from the pooler's "
        "and the migration job's groups on the database's port (separate rules: the group's others stay).")),
    WholeKey("existingDatabaseMaxConnections", default=0, low=0, high=MAX_PG_CONNECTIONS, meaning=(
        "With an existing database, required: its `max_connections` (`SHOW max_connections`), which the "
        "stack cannot read at preview; the pool is sized from it (with `reservedConnections` and "
        "`migrationHeadroom`, which must also leave room for the database's other clients), and the "
        "connections alarm compares with it. 0: unset.")),
    TextKey("existingDatabaseOwnerSecretArn", default=None, meaning=(
        "With an existing database: a Secrets Manager secret holding JSON `username` and `password` of the "
        "database's owner, which the migration task reads at run time (never copied into the stack's state). "
        "Default: the database's RDS-managed master user secret; required when it has none.")),
    FlagKey("manageMasterUserPassword", default=False, meaning=(
        "New instance: RDS keeps the master password in a secret of its own (rotated by RDS), which the "
        "migration task reads at run time, instead of a password the stack generates and holds in its state; "
        "then there is no `directSecretArn`. Turning it on for a deployed instance changes the password in "
        "place.")),
    WholeKey("poolerMinTasks", default=2, low=0, high=1000, meaning=(
        "Fewest PgBouncer tasks (at least 2, spread across AZs).")),
    WholeKey("poolerMaxTasks", default=4, low=0, high=1000, meaning=(
        "Most PgBouncer tasks under CPU autoscaling; divides the pool budget.")),
    WholeKey("deploymentMaximumPercent", default=200, low=100, high=200, meaning=(
        "ECS `maximumPercent` for rolling deploys (100 to 200); old and new tasks share the budget while "
        "both run.")),
    WholeKey("poolerCpu", default=512, low=256, high=16384, meaning=(
        "Fargate CPU units per PgBouncer task: 256, 512 or 1024. PgBouncer is one single-threaded "
        "process, so a task never uses more than one vCPU: with more, its CPU would stay below "
        "`poolerCpuTargetPercent` and `alarmPoolerCpuPercent` however busy it is, and the autoscaler and "
        "the alarm would never act. Scale with `poolerMaxTasks` instead.")),
    WholeKey("poolerMemoryMb", default=1024, low=512, high=122880, meaning=(
        "Fargate memory (MiB) per PgBouncer task; must be valid for the CPU.")),
    WholeKey("poolerCpuTargetPercent", default=60, low=10, high=90, meaning=(
        "Average CPU the autoscaler aims for (10 to 90).")),
    WholeKey("maxClientConn", default=10000, low=1, high=FARGATE_MAX_NOFILE, meaning=(
        "PgBouncer `max_client_conn` per task; the `nofile` ulimit follows it.")),
    WholeKey("queryWaitTimeoutSeconds", default=20, low=1, high=3600, meaning=(
        "PgBouncer `query_wait_timeout`; must be below the timeout of every function attached "
        "(`functionTimeoutSeconds` for the sample functions; a `PooledClient` checks its own), so a queued "
        "function gets a pooler error, not a platform timeout.")),
    WholeKey("poolerStopTimeoutSeconds", default=120, low=2, high=120, meaning=(
        "Seconds ECS waits after SIGINT before SIGKILL (2 to 120).")),
    WholeKey("deregistrationDelaySeconds", default=30, low=0, high=3600, meaning=(
        "NLB deregistration delay before a task is stopped (0 to 3600).")),
    ChoiceKey("containerArchitecture", choices=ARCHITECTURES, default="x86_64", meaning=(
        "CPU architecture of the PgBouncer and migration images and tasks: `x86_64` or `arm64`.")),
    FlagKey("sampleFunctions", default=True, meaning=(
        "Deploy the sample functions (two on Python, one on Node.js). Off: the stack is the pooler, the database "
        "and the migration job for your own functions, which attach through the stack's outputs "
        "(`clientSecurityGroupId` and `pooledSecretPolicyArn`, or a `PooledClient` of their own: README, "
        "\"Stack outputs\"); the `function...` keys then set nothing, and the deploy workflows' smoke test invokes "
        "your function named by the variables `LIFEGUARD_SMOKE_FUNCTION` and `LIFEGUARD_SMOKE_PAYLOAD` "
        "(docs/pipeline.md).")),
    ChoiceKey("functionArchitecture", choices=ARCHITECTURES, default="x86_64", meaning=(
        "Lambda architecture, and the wheels packaged: `x86_64` or `arm64`.")),
    WholeKey("functionTimeoutSeconds", default=30, low=1, high=900, meaning=(
        "The sample functions' Lambda timeout (1 to 900).")),
    WholeKey("functionMemoryMb", default=256, low=128, high=10240, meaning=(
        "Lambda memory (128 to 10240).")),
    WholeKey("functionReservedConcurrency", default=-1, low=-1, high=1_000_000, meaning=(
        "Reserved concurrency per sample function, which caps the clients each can open; -1 reserves none. "
        "Lambda keeps 10 of the account's concurrency unreserved, so in a new account (a limit of 10) any"
        " reservation fails: raise the account's quota first, then set e.g. 50.")),
    FlagKey("demoData", default=NOT_PRODUCTION, meaning=(
        "Apply the demo-data migrations (`NNNN_seed_demo...sql`: the sample orgs and invoices); off in "
        "production. The migration job gets it as `LIFEGUARD_DEMO_DATA`. The smoke test's own org "
        "(`0004_smoke_org.sql`) is created either way.")),
    WholeKey("migrationCpu", default=256, low=256, high=16384, meaning=(
        "Fargate CPU units for the migration task.")),
    WholeKey("migrationMemoryMb", default=512, low=512, high=122880, meaning=(
        "Fargate memory (MiB) for the migration task.")),
    TextKey("migrationImage", default=None, meaning=(
        "Your migration image instead of the sample runner's: a folder holding its `Dockerfile` (relative "
        "to the folder of `Pulumi.yaml`), built and pushed to an ECR repository of the stack's own, or an "
        "ECR image URI of this account and region (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:"
        "...` or `:tag`). The image must run the migration wrapper: base it on ours or add our package "
        "(docs/migrations.md, \"In the stack\"). The job's environment, secrets and roles stay the same.")),
    ListKey("migrationCommand", meaning=(
        'JSON list: your migration command, e.g. `["alembic", "upgrade", "head"]`, which the task runs '
        "through the wrapper (`python3 -m migrator run -- ...`: direct URL only, migration lock, application "
        "role). Empty: the image's own command (the sample runner's `python3 -m migrator`).")),
    ListKey("migrationBookkeepingTables", meaning=(
        'JSON list of `NAME` or `SCHEMA.NAME`: more bookkeeping tables the application role gets no '
        "privilege on, besides the known tools' (the job gets them as `LIFEGUARD_BOOKKEEPING_TABLES`).")),
    WholeKey("logRetentionDays", default=30, low=1, high=3653, meaning=(
        "Retention of every log group the stack creates (a CloudWatch value).")),
    TextKey("alarmEmail", default=None, meaning=(
        "Create an SNS topic for the pool alarms and subscribe this address (AWS mails a confirmation "
        "link first). Not together with `alarmTopicArn`.")),
    TextKey("alarmTopicArn", default=None, meaning=(
        "An existing standard SNS topic the pool alarms notify on alarm and on recovery. Without either "
        "key the alarms only change state (dashboard, console).")),
    WholeKey("alarmClientsWaiting", default=1, low=1, high=100_000, meaning=(
        "Clients queued for a server connection on the busiest PgBouncer task that count towards the "
        "clients-waiting alarm (1 to 100000).")),
    WholeKey("alarmClientsWaitingMinutes", default=3, low=1, high=60, meaning=(
        "Consecutive minutes with at least `alarmClientsWaiting` queued clients before that alarm fires "
        "(1 to 60): a sustained queue, not a burst.")),
    NumberKey("alarmMaxWaitSeconds", default=1.0, low=0.1, high=3600, meaning=(
        "Wait of the oldest queued client that raises the max-wait alarm (2 minutes running; 0.1 to 3600,"
        " fractions allowed); must be below `queryWaitTimeoutSeconds`, where PgBouncer fails the client.")),
    WholeKey("alarmPoolerCpuPercent", default=80, low=1, high=100, meaning=(
        "Average PgBouncer task CPU over 5 minutes that raises the CPU alarm; must be above "
        "`poolerCpuTargetPercent`, which autoscaling holds in normal operation.")),
    WholeKey("alarmDbConnectionsPercent", default=80, low=1, high=100, meaning=(
        "RDS `DatabaseConnections` as a share of `maxConnections` (1 to 100) that raises the connections "
        "alarm (3 minutes running).")),
)
KEY_NAMES = frozenset(spec.name for spec in KEYS)
KEYS_BY_NAME: Mapping[str, Key] = {spec.name: spec for spec in KEYS}


def whole_default(name: str) -> int:
    """The default of the whole-number key ``name``."""
    spec = KEYS_BY_NAME[name]
    if not isinstance(spec, WholeKey) or isinstance(spec.default, Derived):
        raise TypeError(f"{name} is not a whole-number key with a fixed default")
    return spec.default


def text_default(name: str) -> str:
    """The default of the text key ``name`` (the library's components default to the sample stack's)."""
    spec = KEYS_BY_NAME[name]
    if not isinstance(spec, TextKey) or spec.default is None:
        raise TypeError(f"{name} is not a text key with a default")
    return spec.default


# -- the README's reference table ----------------------------------------------------------------

TABLE_BEGIN = "<!-- The table below is generated from lifeguard/aws/keys.py: python -m lifeguard.aws.keys README.md -->"
TABLE_END = "<!-- End of the generated table. -->"


def reference_table() -> str:
    """The Markdown table of every key, as the README holds it between the two markers."""
    rows = [f"| `{spec.name}` | {spec.shown_default} | {spec.meaning} |" for spec in KEYS]
    return "\n".join(["| Key | Default | Meaning |", "|---|---|---|", *rows])


def readme_with_table(text: str) -> str:
    """``text`` with the generated table between the markers in place of what stands there."""
    before, begin, rest = text.partition(TABLE_BEGIN + "\n")
    _, end, after = rest.partition(TABLE_END)
    if not begin or not end:
        raise ValueError(f"the README lacks the table markers {TABLE_BEGIN!r} ... {TABLE_END!r}")
    return f"{before}{begin}{reference_table()}\n{end}{after}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lifeguard.aws.keys README.md  (rewrites the generated configuration table)",
              file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
