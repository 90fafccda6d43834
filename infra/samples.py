"""The sample functions (two in Python, one on Node.js), in the private subnets, reading only the pooled
connection secret.

Their environment carries the secret's ARN, never a URL: the value stays in Secrets Manager,
and the role can read that one secret and no other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from database_urls import POOLED_URL_SECRET_ARN_ENV
from lambdas.contract import FUNCTIONS, NODE_CA_ENV, NODE_FUNCTIONS, PREPARED_ENV, SampleFunction
from lifeguard.aws import policies
from lifeguard.aws.config import FunctionsConfig
from lifeguard.aws.lambda_package import RUNTIME, LambdaPackage
from lifeguard.aws.node_package import RUNTIME as NODE_RUNTIME
from lifeguard.aws.pooler_tls import CA_PATH


@dataclass(frozen=True)
class FunctionsArgs:
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_id: pulumi.Input[str]
    pooled_secret_arn: pulumi.Output[str]
    package: LambdaPackage
    settings: FunctionsConfig
    log_retention_days: int
    pooler_prepared_statements: bool
    """The pooler tracks prepared statements (``PoolerSettings.tracks_prepared_statements``): the
    client may then use psycopg's default ``prepare_threshold``."""
    account: policies.Account
    pooler_ca_layer_arn: pulumi.Input[str]
    """The layer with the pooler's CA, where ``DATABASE_URL``'s ``sslrootcert`` points."""
    node_package: LambdaPackage
    """The Node.js function's zip (``lifeguard.aws.node_package``)."""


class Functions(pulumi.ComponentResource):
    names: dict[str, pulumi.Output[str]]
    arns: dict[str, pulumi.Output[str]]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: FunctionsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:functions:Functions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.settings

        log_groups = {
            spec.key: aws.cloudwatch.LogGroup(
                f"{name}-{spec.key}-logs", retention_in_days=args.log_retention_days, opts=child
            )
            for spec in (*FUNCTIONS, *NODE_FUNCTIONS)
        }
        role = aws.iam.Role(
            f"{name}-role",
            description="The sample functions: VPC networking, their logs, the pooled DATABASE_URL secret",
            assume_role_policy=json.dumps(policies.assume_role("lambda.amazonaws.com", args.account)),
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-role",
            role=role.id,
            policy=pulumi.Output.all(args.pooled_secret_arn, *(group.arn for group in log_groups.values())).apply(
                lambda arns: json.dumps(policies.function_role(list(arns[1:]), arns[0]))
            ),
            opts=child,
        )

        self.names = {}
        self.arns = {}
        deployments: list[tuple[SampleFunction, str, LambdaPackage]] = [
            *((spec, RUNTIME, args.package) for spec in FUNCTIONS),
            *((spec, NODE_RUNTIME, args.node_package) for spec in NODE_FUNCTIONS),
        ]
        archives = {package.path: pulumi.FileArchive(str(package.path)) for _, _, package in deployments}
        for spec, runtime, package in deployments:
            function = aws.lambda_.Function(
                f"{name}-{spec.key}",
                runtime=runtime,
                handler=spec.handler,
                architectures=[cfg.architecture],
                code=archives[package.path],
                # The zip is deterministic, so this only changes when the code or its wheels do.
                source_code_hash=package.base64_sha256,
                role=role.arn,
                timeout=cfg.timeout_s,
                memory_size=cfg.memory_mb,
                reserved_concurrent_executions=cfg.reserved_concurrency,
                environment={"variables": {
                    POOLED_URL_SECRET_ARN_ENV: args.pooled_secret_arn,
                    PREPARED_ENV: "1" if args.pooler_prepared_statements else "0",
                    # Node.js adds it to its trusted CAs at start: clients that read no sslrootcert
                    # (postgres.js) verify the pooler too. Python ignores it.
                    NODE_CA_ENV: CA_PATH,
                }},
                layers=[args.pooler_ca_layer_arn],
                vpc_config={"subnet_ids": args.subnet_ids, "security_group_ids": [args.security_group_id]},
                logging_config={"log_format": "JSON", "log_group": log_groups[spec.key].name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            self.names[spec.key] = function.name
            self.arns[spec.key] = function.arn

        self.role_arn = role.arn
        self.register_outputs({"names": self.names, "arns": self.arns, "roleArn": self.role_arn})
