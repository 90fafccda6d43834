"""The stack variants the offline proofs run on: the example stack and the configurations the README
names (production defaults, NAT, an existing VPC with arm64 containers, an existing Aurora cluster and an
existing RDS instance in an existing VPC). tests/infra/conftest.py runs
each once per session; ``every_run`` gives each invariant test every one of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.infra.infra_harness import ProgramRun

REGION = {"aws:region": "eu-west-1"}
EXISTING_VPC = "vpc-0123456789abcdef0"
ALARM_EMAIL = "oncall@example.com"
EXISTING_TOPIC = "arn:aws:sns:eu-west-1:123456789012:oncall"
EXISTING_SUBNETS = {"subnet-0123456789abcdef0": (EXISTING_VPC, "eu-west-1a"),
                    "subnet-0123456789abcdef1": (EXISTING_VPC, "eu-west-1b"),
                    "subnet-0123456789abcdef2": (EXISTING_VPC, "eu-west-1c")}

# Nothing but the region set: the defaults, which describe a small production stack (x86-64).
PRODUCTION = REGION
NAT = {**REGION, "awsApiAccess": "nat", "availabilityZoneCount": 3, "alarmEmail": ALARM_EMAIL,
       "alarmClientsWaitingMinutes": 5, "alarmMaxWaitSeconds": "2.5", "alarmPoolerCpuPercent": 90,
       "alarmDbConnectionsPercent": 90, "maxConnections": 415}
# The example stack's functions are arm64; this variant's containers are too.
EXISTING_VPC_ARM64 = {**REGION, "existingVpcId": EXISTING_VPC,
                      "existingPrivateSubnetIds": json.dumps(sorted(EXISTING_SUBNETS)), "production": "false",
                      "containerArchitecture": "arm64", "alarmTopicArn": EXISTING_TOPIC}

# An existing database (#24), in the existing VPC: an Aurora PostgreSQL cluster whose owner secret is RDS's
# managed master secret (read at preview from the cluster), and an RDS instance on a non-default port
# without one (its owner secret given).
EXISTING_DB_SECURITY_GROUP = "sg-0123456789abcdef0"
AURORA_CLUSTER = "app-aurora"
AURORA_WRITER = f"{AURORA_CLUSTER}.cluster-c9akciq32.eu-west-1.rds.amazonaws.com"
AURORA_MANAGED_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-0a1b2c3d-AbCdEf"
EXISTING_INSTANCE = "app-postgres"
EXISTING_INSTANCE_ADDRESS = f"{EXISTING_INSTANCE}.c9akciq32.eu-west-1.rds.amazonaws.com"
EXISTING_INSTANCE_PORT = 5433
EXISTING_OWNER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/owner-AbCdEf"
DB_CLUSTERS = {AURORA_CLUSTER: {
    "engine": "aurora-postgresql", "endpoint": AURORA_WRITER, "port": 5432,
    "readerEndpoint": f"{AURORA_CLUSTER}.cluster-ro-c9akciq32.eu-west-1.rds.amazonaws.com",
    "arn": f"arn:aws:rds:eu-west-1:123456789012:cluster:{AURORA_CLUSTER}", "databaseName": "app",
    "masterUsername": "postgres", "vpcSecurityGroupIds": [EXISTING_DB_SECURITY_GROUP, "sg-0fedcba9876543210"],
    "masterUserSecrets": [{"secretArn": AURORA_MANAGED_SECRET, "kmsKeyId": "alias/aws/secretsmanager",
                           "secretStatus": "active"}],
}}
DB_INSTANCES = {EXISTING_INSTANCE: {
    "engine": "postgres", "address": EXISTING_INSTANCE_ADDRESS, "port": EXISTING_INSTANCE_PORT,
    "endpoint": f"{EXISTING_INSTANCE_ADDRESS}:{EXISTING_INSTANCE_PORT}",
    "dbInstanceArn": f"arn:aws:rds:eu-west-1:123456789012:db:{EXISTING_INSTANCE}", "dbName": "app",
    "masterUsername": "postgres", "vpcSecurityGroups": [EXISTING_DB_SECURITY_GROUP], "masterUserSecrets": [],
    "dbClusterIdentifier": "", "replicateSourceDb": "",
}}
_EXISTING_DATABASE = {**REGION, "existingVpcId": EXISTING_VPC,
                      "existingPrivateSubnetIds": json.dumps(sorted(EXISTING_SUBNETS)), "production": "false",
                      "existingDatabaseSecurityGroupId": EXISTING_DB_SECURITY_GROUP}
EXISTING_AURORA = {**_EXISTING_DATABASE, "existingAuroraClusterId": AURORA_CLUSTER,
                   "existingDatabaseMaxConnections": 1000}
EXISTING_INSTANCE_CONFIG = {**_EXISTING_DATABASE, "existingDatabaseInstanceId": EXISTING_INSTANCE,
                            "existingDatabaseMaxConnections": 200,
                            "existingDatabaseOwnerSecretArn": EXISTING_OWNER_SECRET}

VARIANTS = ("example", "production", "nat", "existing-vpc-arm64", "existing-aurora", "existing-instance")


def run_variant(variant: str, build_dir: Path) -> ProgramRun:
    """The whole program run as ``variant``: its config, stack and mocks (one definition for the session's
    fixtures, tests/infra/conftest.py, and the continuity snapshots, tests/infra/continuity.py)."""
    from tests.infra.infra_harness import StrictMocks, example_stack_config, run_program

    if variant == "example":
        return run_program(example_stack_config(), build_dir)
    if variant == "production":
        return run_program(PRODUCTION, build_dir, stack="prod")
    if variant == "nat":
        return run_program(NAT, build_dir, stack="prod")
    if variant == "existing-vpc-arm64":
        return run_program(EXISTING_VPC_ARM64, build_dir, mocks=StrictMocks(subnets=EXISTING_SUBNETS))
    if variant == "existing-aurora":
        return run_program(EXISTING_AURORA, build_dir,
                           mocks=StrictMocks(subnets=EXISTING_SUBNETS, db_clusters=DB_CLUSTERS))
    if variant == "existing-instance":
        return run_program(EXISTING_INSTANCE_CONFIG, build_dir,
                           mocks=StrictMocks(subnets=EXISTING_SUBNETS, db_instances=DB_INSTANCES))
    raise ValueError(f"no such variant: {variant} (known: {', '.join(VARIANTS)})")
