"""Config validation: every problem names the ``lifeguard:`` key to change, and fails before any resource."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifeguard.aws.config import InfraConfig, InfraConfigError, load
from lifeguard.aws.keys import KEY_NAMES, KEYS, REFERENCE_DOC, NumberKey, WholeKey, readme_with_table
from lifeguard.aws.types import AlarmThresholds
from pgbouncer.contract import IMAGE_SOCKET_DIR, STATS_USER
from tests.infra.infra_harness import (
    REPO_ROOT,
    StrictMocks,
    example_stack_config,
    last_registrations,
    run_program,
)


def problems(values: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(InfraConfigError) as error:
        load({k: str(v) for k, v in values.items()})
    assert "nothing was created" in str(error.value)
    return error.value.problems


def test_defaults_fit_a_small_production_stack() -> None:
    cfg = load({})
    assert cfg.production is True
    assert cfg.database.multi_az is True and cfg.database.deletion_protection is True
    assert cfg.secret_recovery_window_days == 30
    assert cfg.network.api_access == "endpoints" and cfg.network.availability_zone_count == 2
    assert cfg.database.max_connections == 100
    assert (cfg.pooler.min_tasks, cfg.pooler.max_tasks, cfg.pooler.deployment_maximum_percent) == (2, 4, 200)
    assert cfg.pooler.pool_size == (100 - 5 - 2) // (4 * 2)
    assert cfg.pooler.nofile >= cfg.pooler.settings.required_open_files()
    assert cfg.pooler.query_wait_timeout_s < cfg.functions.timeout_s
    assert cfg.functions.reserved_concurrency is None  # works in accounts limited to 10 (#12.14)
    assert cfg.log_retention_days == 30
    # The metrics sidecar's console user and the shared socket volume.
    settings = cfg.pooler.settings
    assert (settings.stats_users, settings.unix_socket_dir) == ((STATS_USER,), IMAGE_SOCKET_DIR)
    assert settings.admin_users == ()
    assert (cfg.alarms.email, cfg.alarms.topic_arn, cfg.alarms.thresholds) == (None, None, AlarmThresholds())


def test_alarm_settings() -> None:
    cfg = load({"alarmEmail": "ops@example.com", "alarmClientsWaiting": "4", "alarmClientsWaitingMinutes": "10",
                "alarmMaxWaitSeconds": "0.5", "alarmPoolerCpuPercent": "75", "alarmDbConnectionsPercent": "95"})
    assert (cfg.alarms.email, cfg.alarms.topic_arn) == ("ops@example.com", None)
    t = cfg.alarms.thresholds
    assert (t.clients_waiting, t.clients_waiting_minutes, t.max_wait_seconds) == (4, 10, 0.5)
    assert (t.pooler_cpu_percent, t.db_connections_ratio) == (75.0, 0.95)
    t.validate()  # what the component checks when it is created
    topic = "arn:aws:sns:us-east-1:123456789012:pager_duty-1"
    assert load({"alarmTopicArn": topic}).alarms.topic_arn == topic


def test_an_invalid_key_is_reported_once_not_again_through_the_alarm_that_compares_with_it() -> None:
    found = problems({"poolerCpuTargetPercent": 95, "queryWaitTimeoutSeconds": 0})
    assert not [p for p in found if p.startswith(("lifeguard:alarmPoolerCpuPercent", "lifeguard:alarmMaxWaitSeconds"))]
    assert any(p.startswith("lifeguard:poolerCpuTargetPercent:") for p in found)
    assert any(p.startswith("lifeguard:queryWaitTimeoutSeconds:") for p in found)


def test_example_stack_is_valid() -> None:
    values = {k.split(":", 1)[1]: v for k, v in example_stack_config().items() if k.startswith("lifeguard:")}
    cfg = load(values)
    assert isinstance(cfg, InfraConfig)
    assert cfg.production is False and cfg.database.multi_az is False
    assert cfg.functions.reserved_concurrency is None
    assert cfg.secret_recovery_window_days == 0


def test_production_switches_can_be_overridden_one_by_one() -> None:
    cfg = load({"production": "true", "dbMultiAz": "false"})
    assert cfg.database.multi_az is False and cfg.database.deletion_protection is True


def test_minimum_healthy_percent_leaves_room_for_a_deploy() -> None:
    # With no room for an extra task ECS must stop one first, and the budget counts no extra task.
    cfg = load({"deploymentMaximumPercent": "100"})
    assert cfg.pooler.deployment_minimum_healthy_percent == 50
    assert cfg.pooler.pool_size == (100 - 5 - 2) // 4
    assert load({}).pooler.deployment_minimum_healthy_percent == 100


def test_existing_vpc_defaults_to_its_own_route_to_aws() -> None:
    cfg = load({"existingVpcId": "vpc-0123456789abcdef0",
                "existingPrivateSubnetIds": '["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]'})
    assert cfg.network.api_access == "none"
    assert cfg.network.existing_private_subnet_ids == ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")


TWO_SUBNETS = '["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]'
EXISTING = {"existingVpcId": "vpc-0123456789abcdef0", "existingPrivateSubnetIds": TWO_SUBNETS}

# (values, the key the message must name, a fragment of the explanation)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"maxConnection": 100}, "maxConnection", "not a lifeguard setting"),
    ({"production": "yes"}, "production", "true or false"),
    ({"logRetentionDays": 13}, "logRetentionDays", "CloudWatch"),
    ({"maxConnections": "lots"}, "maxConnections", "whole number"),
    ({"maxConnections": 0}, "maxConnections", "between 1 and"),
    ({"maxConnections": 20, "poolerMaxTasks": 10}, "pool sizing", "Raise maxConnections, or lower poolerMaxTasks"),
    ({"reservedConnections": 98}, "pool sizing", "leaves no server connections"),
    ({"reservedConnections": -1}, "reservedConnections", "between 0 and"),
    ({"migrationHeadroom": -1}, "migrationHeadroom", "between 0 and"),
    ({"deploymentMaximumPercent": 250}, "deploymentMaximumPercent", "between 100 and 200"),
    ({"poolerMinTasks": 0}, "poolerMinTasks", "at least 2"),
    ({"poolerMinTasks": 1}, "poolerMinTasks", "at least 2"),
    ({"poolerMaxTasks": 1}, "poolerMaxTasks", "at least poolerMinTasks"),
    ({"queryWaitTimeoutSeconds": 30, "functionTimeoutSeconds": 30}, "queryWaitTimeoutSeconds",
     "below functionTimeoutSeconds"),
    ({"functionTimeoutSeconds": 10}, "queryWaitTimeoutSeconds", "below functionTimeoutSeconds (10)"),
    ({"functionArchitecture": "amd64"}, "functionArchitecture", "one of x86_64, arm64"),
    ({"containerArchitecture": "riscv64"}, "containerArchitecture", "one of x86_64, arm64"),
    ({"functionReservedConcurrency": 0}, "functionReservedConcurrency", "stop the sample functions"),
    ({"functionReservedConcurrency": -2}, "functionReservedConcurrency", "between -1 and"),
    ({"functionReservedConcurrency": 5000, "maxClientConn": 1000}, "maxClientConn", "cannot hold"),
    ({"maxClientConn": 1_048_576, "functionReservedConcurrency": -1}, "maxClientConn", "file descriptors"),
    ({"maxClientConn": 0}, "maxClientConn", "between 1 and"),
    ({"poolerCpu": 300}, "poolerCpu", "Fargate's CPU sizes"),
    ({"poolerMemoryMb": 8192}, "poolerMemoryMb", "Fargate allows 1024 to 4096"),
    ({"migrationMemoryMb": 4096}, "migrationMemoryMb", "Fargate allows 512 to 2048"),
    ({"migrationCpu": 128}, "migrationCpu", "between 256 and"),
    ({"poolerCpuTargetPercent": 95}, "poolerCpuTargetPercent", "between 10 and 90"),
    ({"poolerStopTimeoutSeconds": 300}, "poolerStopTimeoutSeconds", "between 2 and 120"),
    ({"deregistrationDelaySeconds": -1}, "deregistrationDelaySeconds", "between 0 and 3600"),
    ({"functionTimeoutSeconds": 901}, "functionTimeoutSeconds", "between 1 and 900"),
    ({"functionMemoryMb": 64}, "functionMemoryMb", "between 128 and 10240"),
    ({"availabilityZoneCount": 1}, "availabilityZoneCount", "between 2 and 6"),
    ({"vpcCidr": "10.0.0.0/8"}, "vpcCidr", "/16 to /24"),
    ({"vpcCidr": "10.0.0.0/25"}, "vpcCidr", "/16 to /24"),
    ({"vpcCidr": "banana"}, "vpcCidr", "IPv4 CIDR"),
    ({"awsApiAccess": "vpn"}, "awsApiAccess", "one of endpoints, nat, none"),
    ({"awsApiAccess": "none"}, "awsApiAccess", "only for an existing VPC"),
    ({**EXISTING, "awsApiAccess": "endpoints"}, "awsApiAccess", "must be `none` with existingVpcId"),
    ({**EXISTING, "existingVpcId": "my-vpc"}, "existingVpcId", "must look like vpc-"),
    ({**EXISTING, "existingPrivateSubnetIds": '["subnet-0123456789abcdef0"]'}, "existingPrivateSubnetIds",
     "at least two private subnets"),
    ({"existingVpcId": "vpc-0123456789abcdef0"}, "existingPrivateSubnetIds", "at least two private subnets"),
    ({**EXISTING, "existingPrivateSubnetIds": '["subnet-0123456789abcdef0", "sub-1"]'},
     "existingPrivateSubnetIds", "'sub-1' is not a subnet ID"),
    ({**EXISTING, "existingPrivateSubnetIds": '["subnet-0123456789abcdef0", "subnet-0123456789abcdef0"]'},
     "existingPrivateSubnetIds", "twice"),
    ({**EXISTING, "existingPrivateSubnetIds": "subnet-0123456789abcdef0"}, "existingPrivateSubnetIds",
     "JSON list"),
    ({"existingPrivateSubnetIds": TWO_SUBNETS}, "existingPrivateSubnetIds", "only used together with existingVpcId"),
    ({"dbName": "pgbouncer"}, "dbName", "not be one of"),
    ({"dbName": "1app"}, "dbName", "start with a letter"),
    ({"dbUsername": "rdsadmin"}, "dbUsername", "not start with 'rds'"),
    ({"dbUsername": "app-user"}, "dbUsername", "letters, digits and '_'"),
    ({"dbInstanceClass": "t4g.small"}, "dbInstanceClass", "db.t4g.small"),
    ({"dbAllocatedStorageGb": 10}, "dbAllocatedStorageGb", "between 20 and"),
    ({"dbMaxAllocatedStorageGb": 10}, "dbMaxAllocatedStorageGb", "at least dbAllocatedStorageGb"),
    ({"postgresMajorVersion": 12}, "postgresMajorVersion", "between 14 and 18"),
    ({"dbBackupRetentionDays": 0}, "dbBackupRetentionDays", "between 1 and 35"),
    ({"dbMultiAz": "sometimes"}, "dbMultiAz", "true or false"),
    ({"deletionProtection": "1"}, "deletionProtection", "true or false"),
    ({"alarmEmail": "oncall"}, "alarmEmail", "must be an e-mail address"),
    ({"alarmEmail": "ops@example.com", "alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:alerts"}, "alarmEmail",
     "not both"),
    ({"alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:alerts.fifo"}, "alarmTopicArn", "(not FIFO)"),
    ({"alarmTopicArn": "alerts"}, "alarmTopicArn", "standard SNS topic ARN"),
    ({"alarmTopicArn": "arn:aws:sqs:eu-west-1:123456789012:alerts"}, "alarmTopicArn", "standard SNS topic ARN"),
    ({"alarmMaxWaitSeconds": 20}, "alarmMaxWaitSeconds", "below queryWaitTimeoutSeconds (20)"),
    ({"alarmMaxWaitSeconds": 5, "queryWaitTimeoutSeconds": 5}, "alarmMaxWaitSeconds", "PgBouncer fails a client"),
    ({"alarmMaxWaitSeconds": "soon"}, "alarmMaxWaitSeconds", "must be a number"),
    ({"alarmMaxWaitSeconds": "nan"}, "alarmMaxWaitSeconds", "must be a number"),
    ({"alarmMaxWaitSeconds": 0}, "alarmMaxWaitSeconds", "between 0.1 and 3600"),
    ({"alarmPoolerCpuPercent": 60}, "alarmPoolerCpuPercent", "above poolerCpuTargetPercent (60)"),
    ({"alarmPoolerCpuPercent": 70, "poolerCpuTargetPercent": 75}, "alarmPoolerCpuPercent", "normal operation"),
    ({"alarmPoolerCpuPercent": 101}, "alarmPoolerCpuPercent", "between 1 and 100"),
    ({"alarmDbConnectionsPercent": 0}, "alarmDbConnectionsPercent", "between 1 and 100"),
    ({"alarmDbConnectionsPercent": "80%"}, "alarmDbConnectionsPercent", "whole number"),
    ({"alarmClientsWaiting": 0}, "alarmClientsWaiting", "between 1 and"),
    ({"alarmClientsWaitingMinutes": 61}, "alarmClientsWaitingMinutes", "between 1 and 60"),
]


@pytest.mark.parametrize(("values", "key", "fragment"), INVALID, ids=[f"{c[1]}:{c[2]}" for c in INVALID])
def test_invalid_config_names_the_key(values: dict[str, Any], key: str, fragment: str) -> None:
    found = problems(values)
    prefix = f"lifeguard:{key}:" if key != "pool sizing" else "lifeguard pool sizing:"
    matching = [p for p in found if p.startswith(prefix)]
    assert matching, f"no problem names {prefix} in {found}"
    assert any(fragment in p for p in matching), f"{fragment!r} not in {matching}"


def test_renderer_errors_are_reported_as_config_errors() -> None:
    # The PgBouncer renderer validates too; its message is passed on, not turned into a traceback.
    found = problems({"maxClientConn": 0})
    assert any(p.startswith("lifeguard PgBouncer settings:") and "max_client_conn" in p for p in found)


def test_all_problems_are_reported_at_once() -> None:
    found = problems({"poolerMinTasks": 0, "functionArchitecture": "sparc", "logRetentionDays": 2})
    keys = {match.group(1) for p in found if (match := re.match(r"lifeguard:(\w+):", p))}
    assert {"poolerMinTasks", "functionArchitecture", "logRetentionDays"} <= keys


# -- the whole program fails before it registers anything ---------------------------------------

PROGRAM_FAILURES: list[tuple[dict[str, Any], StrictMocks | None, str]] = [
    ({"maxConnections": 20, "poolerMaxTasks": 10}, None, "pool sizing"),
    ({"poolerMinTasks": 0}, None, "lifeguard:poolerMinTasks"),
    ({"queryWaitTimeoutSeconds": 40, "functionTimeoutSeconds": 30}, None, "lifeguard:queryWaitTimeoutSeconds"),
    ({"functionArchitecture": "x86"}, None, "lifeguard:functionArchitecture"),
    ({"alarmEmail": "oncall"}, None, "lifeguard:alarmEmail"),
    ({"alarmMaxWaitSeconds": 30}, None, "lifeguard:alarmMaxWaitSeconds"),
    ({"availabilityZoneCount": 3}, StrictMocks(zones=("eu-west-1a", "eu-west-1b")), "lifeguard:availabilityZoneCount"),
    ({}, StrictMocks(zones=("eu-west-1a",)), "lifeguard:availabilityZoneCount"),
    ({**EXISTING}, StrictMocks(subnets={"subnet-0123456789abcdef0": ("vpc-0123456789abcdef0", "eu-west-1a"),
                                        "subnet-0123456789abcdef1": ("vpc-0123456789abcdef0", "eu-west-1a")}),
     "at least two AZs"),
    ({**EXISTING}, StrictMocks(subnets={"subnet-0123456789abcdef0": ("vpc-0123456789abcdef0", "eu-west-1a"),
                                        "subnet-0123456789abcdef1": ("vpc-0fffffffffffffff0", "eu-west-1b")}),
     "not in existingVpcId"),
]


@pytest.mark.parametrize(("values", "mocks", "fragment"), PROGRAM_FAILURES,
                         ids=[c[2] for c in PROGRAM_FAILURES])
def test_program_fails_before_creating_anything(
    values: dict[str, Any], mocks: StrictMocks | None, fragment: str, build_dir: Path
) -> None:
    config = {**example_stack_config(), **{f"lifeguard:{k}": str(v) for k, v in values.items()}}
    if "existingVpcId" in values:
        config.pop("lifeguard:awsApiAccess")
    with pytest.raises(InfraConfigError) as error:
        run_program(config, build_dir, mocks=mocks)
    assert fragment in str(error.value)
    assert last_registrations() == []


# -- documentation ------------------------------------------------------------------------------


def test_every_key_is_documented_with_its_default() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    text = text.split("## Configuration reference", 1)[1].split("### The AWS stack", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", text, flags=re.MULTILINE))
    assert set(rows) == set(KEY_NAMES)
    for spec in KEYS:
        assert rows[spec.name].strip("` ") == spec.shown_default.strip("` "), spec.name


def test_the_readme_table_is_the_one_generated_from_the_keys() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert text == readme_with_table(text), "regenerate it: .venv/bin/python -m lifeguard.aws.keys README.md"


BOUNDED = [spec for spec in KEYS if isinstance(spec, WholeKey | NumberKey)]


@pytest.mark.parametrize("spec", BOUNDED, ids=[spec.name for spec in BOUNDED])
def test_the_reader_takes_each_keys_bounds_from_the_table(spec: WholeKey | NumberKey) -> None:
    whole = isinstance(spec, WholeKey)
    step = 1 if whole else 0.01
    bounds = f"between {spec.low} and {spec.high}" if whole else f"between {spec.low:g} and {spec.high:g}"
    for outside in (spec.low - step, spec.high + step):
        found = [p for p in problems({spec.name: outside}) if p.startswith(f"lifeguard:{spec.name}:")]
        assert any(bounds in p for p in found), found


def test_every_fixed_default_is_within_its_bounds() -> None:
    # The reader checks the bounds of given values only; a fixed default must hold by itself.
    for spec in BOUNDED:
        if isinstance(spec.default, int | float):
            assert spec.low <= spec.default <= spec.high, spec.name


def test_the_zone_count_follows_the_zones_named() -> None:
    cfg = load({"availabilityZones": '["eu-west-1a", "eu-west-1b", "eu-west-1c"]'})
    assert (cfg.network.availability_zone_count, cfg.network.availability_zones) == (
        3, ("eu-west-1a", "eu-west-1b", "eu-west-1c"))


def test_the_key_table_imports_no_pulumi() -> None:
    # lifeguard bench sizes with the table's defaults in the local install, which has no Pulumi.
    code = ("import sys, lifeguard.aws.keys, lifeguard.bench.sizing; "
            "print(sorted(m for m in sys.modules if 'pulumi' in m))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_unknown_key_points_at_the_reference_that_exists() -> None:
    with pytest.raises(InfraConfigError) as error:
        load({"maxConnection": 100})
    assert REFERENCE_DOC in str(error.value)
    document, sections = REFERENCE_DOC.split(", ", 1)
    headings = (REPO_ROOT / document).read_text().splitlines()
    section, subsection = (part.strip('"') for part in sections.split(" > "))
    assert headings.index(f"## {section}") < headings.index(f"### {subsection}")


def test_example_stack_file_holds_no_secret() -> None:
    document = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    for key, value in document["config"].items():
        assert not isinstance(value, dict), f"{key} holds an encrypted (`secure:`) value"
        assert "password" not in key.lower() and "secret" not in key.lower(), key
    assert set(k.split(":", 1)[1] for k in example_stack_config() if k.startswith("lifeguard:")) <= KEY_NAMES


def test_project_file_points_at_the_program() -> None:
    from lifeguard.aws.config import PROJECT

    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    # The project name is the config namespace: `lifeguard:<key>`.
    assert project["name"] == PROJECT
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert (REPO_ROOT / project["main"] / "__main__.py").is_file()


# -- the function checks count the functions actually attached ---------------------------------------


def test_the_client_capacity_check_counts_every_sample_function() -> None:
    # Three sample functions (two on Python, one on Node.js) at 800 each may open 2400 clients: two tasks of
    # 1000 cannot hold them (a check that counted two functions, 1600, let this through).
    found = problems({"functionReservedConcurrency": 800, "maxClientConn": 1000})
    assert any(p.startswith("lifeguard:maxClientConn:") and "2400 clients" in p and "3 sample functions" in p
               for p in found), found


def test_without_the_sample_functions_their_checks_do_not_apply() -> None:
    # No function is attached: the function keys bind nothing (a client in another stack checks its own
    # timeout against poolerQueryWaitTimeoutSeconds: lifeguard.aws.PooledClient).
    cfg = load({"sampleFunctions": "false", "functionReservedConcurrency": "800", "maxClientConn": "1000",
                "queryWaitTimeoutSeconds": "40", "functionTimeoutSeconds": "30"})
    assert cfg.functions.sample_functions is False
    assert cfg.functions.attached_count == 0
    assert load({}).functions.attached_count == 3
