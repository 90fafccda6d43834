"""A product's own Pulumi program: its existing VPC, its existing Aurora PostgreSQL cluster, lifeguard's
pooler in front of that cluster, and two functions of its own attached through a PooledClient: `orders`
(a zip, Python) and `reports` (a container image, the pooler's CA copied into it).

lifeguard comes from the installed distribution (README.md of this folder); nothing here refers to the
lifeguard repository. Config: Pulumi.example.yaml.
"""

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from lifeguard.aws import (
    AppRoleCredentials,
    ConnectionSecrets,
    Database,
    MigrationJob,
    Network,
    PooledClient,
    Pooler,
    PoolerCertificateAuthority,
)

HERE = Path(__file__).parent
TIMEOUT_SECONDS = 30
APP_ROLE = "orders_app"
TAGS = {"product": "acme-orders"}

config = pulumi.Config()
db_name = config.get("dbName") or "orders"
max_connections = config.require_int("auroraMaxConnections")

# What you have: the VPC (its own route to AWS APIs) and the Aurora cluster, by ids.
network = Network("network", {
    "existing_vpc_id": config.require("vpcId"),
    "existing_private_subnet_ids": config.require_object("privateSubnetIds"),
    "tags": TAGS,
})
database = Database("database", {
    "existing_cluster_identifier": config.require("auroraClusterIdentifier"),
    "max_connections": max_connections,
    "security_group_id": config.require("auroraSecurityGroupId"),
    # The cluster's owner secret: the migration task reads it at run time; its password never enters state.
    "owner_secret_arn": config.require("auroraOwnerSecretArn"),
    # Rules into the cluster's group from these, each a resource of its own (the group's others stay yours).
    "client_security_group_ids": [network.pooler_security_group_id, network.migration_security_group_id],
    "db_name": db_name,
    "tags": TAGS,
})

# The pooler: PgBouncer in transaction mode, TLS from its own CA, logging in as a DML-only role whose
# password and SCRAM verifier are generated here (PgBouncer holds only the verifier).
app_role = AppRoleCredentials("app-role", {"username": APP_ROLE})
ca = PoolerCertificateAuthority("pooler-ca", {})
pooler = Pooler("pooler", {
    "vpc_id": network.vpc_id,
    "subnet_ids": network.private_subnet_ids,
    "load_balancer_security_group_id": network.load_balancer_security_group_id,
    "task_security_group_id": network.pooler_security_group_id,
    "database_address": database.address,
    "database_port": database.port,
    "db_name": db_name,
    "max_connections": max_connections,
    "username": app_role.username,
    "verifier": app_role.verifier,
    "ca_cert_pem": ca.cert_pem,
    "ca_private_key_pem": ca.private_key_pem,
    "tags": TAGS,
})
# The pooled URL's secret, what the functions read. No direct-URL secret: the owner's password stays in the
# cluster's own secret (no `password` here), and the migration task composes the direct URL at run time.
secrets = ConnectionSecrets("connection", {
    "app_username": app_role.username,
    "app_password": app_role.password,
    "db_name": db_name,
    "pooler_host": pooler.endpoint,
    "pooler_port": Pooler.port,
    "tags": TAGS,
})
# Migrations straight to the writer, as the owner; the job also creates the application role.
migration = MigrationJob("migration", {
    "subnet_ids": network.private_subnet_ids,
    "security_group_id": network.migration_security_group_id,
    "app_role": APP_ROLE,
    "app_role_verifier_secret_arn": pooler.credentials_secret_arn,
    "owner_secret_arn": config.require("auroraOwnerSecretArn"),
    "database_host": database.address,
    "database_port": database.port,
    "db_name": db_name,
    "tags": TAGS,
})

# The attach unit for both functions: a security group let into the pooler, a policy that reads the pooled
# secret and nothing else, the environment, and the CA (a layer for the zip, the PEM for the image).
client = PooledClient("functions", {
    "vpc_id": network.vpc_id,
    "pooler_security_group_id": network.load_balancer_security_group_id,
    "pooler_port": Pooler.port,
    "pooled_secret_arn": secrets.pooled_secret_arn,
    "ca_layer_arn": ca.layer_arn,
    "ca_pem": ca.cert_pem,
    "query_wait_timeout_seconds": 20,
    "function_timeout_seconds": TIMEOUT_SECONDS,
    # The functions also call other AWS services: HTTPS anywhere, through the VPC's own route.
    "allow_https_egress": True,
    "tags": TAGS,
})

role = aws.iam.Role("functions-role", assume_role_policy=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}), tags=TAGS)
vpc_access = aws.iam.RolePolicyAttachment(
    "functions-vpc-access", role=role.name,
    policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")
grant = client.grant(role)
vpc_config = {"subnet_ids": network.private_subnet_ids, "security_group_ids": client.security_group_ids}
after_role = pulumi.ResourceOptions(depends_on=[vpc_access, grant])

# `orders`: a zip; the CA layer puts the pooler's CA where the URL's sslrootcert expects it.
orders = aws.lambda_.Function(
    "orders",
    runtime="python3.13",
    architectures=["arm64"],
    handler="handler.handler",
    code=pulumi.FileArchive(str(HERE / "functions" / "orders")),
    role=role.arn,
    timeout=TIMEOUT_SECONDS,
    layers=[client.ca_layer_arn],
    environment={"variables": client.environment},
    vpc_config=vpc_config,
    tags=TAGS,
    opts=after_role,
)

# `reports`: an image (images take no layers), with the CA written at the client's path by its Dockerfile.
repository = aws.ecr.Repository("reports", image_tag_mutability="IMMUTABLE", force_delete=True, tags=TAGS)
token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id)
image = docker.Image(
    "reports-image",
    image_name=repository.repository_url.apply(lambda url: f"{url}:reports"),
    build=docker.DockerBuildArgs(
        context=str(HERE / "functions" / "reports"),
        platform="linux/arm64",
        args={"POOLER_CA_PEM": client.ca_pem, "POOLER_CA_PATH": client.ca_path},
    ),
    registry=docker.RegistryArgs(server=repository.repository_url, username=token.user_name,
                                 password=pulumi.Output.secret(token.password)),
)
reports = aws.lambda_.Function(
    "reports",
    package_type="Image",
    image_uri=image.repo_digest,
    architectures=["arm64"],
    role=role.arn,
    timeout=TIMEOUT_SECONDS,
    environment={"variables": client.environment},
    vpc_config=vpc_config,
    tags=TAGS,
    opts=after_role,
)

pulumi.export("poolerEndpoint", pooler.endpoint)
pulumi.export("ordersFunctionName", orders.name)
pulumi.export("reportsFunctionName", reports.name)
pulumi.export("migrationTaskDefinitionArn", migration.task_definition_arn)
