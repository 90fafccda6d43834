"""Another stack attaches its own function to a lifeguard stack's pooler, through that stack's outputs.

The lifeguard stack (the repository's sample stack, `sampleFunctions: false` if you want only yours) keeps
the pooler, the database and the pooled secret; this stack owns only what it attaches: a PooledClient (its
security group let into the pooler, the policy that reads the pooled secret and nothing else), a role, and
the function. Config (`pulumi config set ...`):

    lifeguardStack     the lifeguard stack, e.g. acme/lifeguard/prod
    throughEndpoints   that stack's VPC reaches AWS APIs through interface endpoints (awsApiAccess:
                       endpoints, its default for a new VPC): true (default) or false
"""

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws

from lifeguard.aws import PooledClient, pooled_client_args_from_stack

TIMEOUT_SECONDS = 30
here = Path(__file__).parent
config = pulumi.Config()
lifeguard = pulumi.StackReference(config.require("lifeguardStack"))

client = PooledClient("audit", pooled_client_args_from_stack(
    lifeguard,
    function_timeout_seconds=TIMEOUT_SECONDS,
    through_endpoints=config.get_bool("throughEndpoints") is not False,
    tags={"team": "audit"},
))

role = aws.iam.Role("audit-role", assume_role_policy=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}))
# Logs and the network interfaces a function in a VPC needs (AWS's managed policy).
vpc_access = aws.iam.RolePolicyAttachment(
    "audit-vpc-access", role=role.name,
    policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")
# Read the pooled secret, and nothing else: the client's managed policy.
grant = client.grant(role)

function = aws.lambda_.Function(
    "audit",
    runtime="nodejs24.x",
    handler="index.handler",
    code=pulumi.FileArchive(str(here / "functions" / "audit")),
    role=role.arn,
    timeout=TIMEOUT_SECONDS,
    # The layer puts the pooler's CA where the URL's sslrootcert (and NODE_EXTRA_CA_CERTS) expect it.
    layers=[client.ca_layer_arn],
    environment={"variables": client.environment},
    vpc_config={"subnet_ids": lifeguard.require_output("privateSubnetIds"),
                "security_group_ids": client.security_group_ids},
    opts=pulumi.ResourceOptions(depends_on=[vpc_access, grant]),
)

pulumi.export("auditFunctionName", function.name)
pulumi.export("auditSecurityGroupId", client.security_group_id)
