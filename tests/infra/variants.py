"""The stack variants the offline proofs run on: the example stack and the configurations the README
names (production defaults, NAT, an existing VPC with arm64 containers). tests/infra/conftest.py runs
each once per session; ``every_run`` gives each invariant test every one of them."""

from __future__ import annotations

import json

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

VARIANTS = ("example", "production", "nat", "existing-vpc-arm64")
