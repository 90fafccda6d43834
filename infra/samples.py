"""The sample functions (two in Python, one on Node.js), in the private subnets, reading only the pooled
connection secret.

They attach to the pooler through a :class:`lifeguard.aws.PooledClient`, as a user's functions would: its
security group, its environment (the secret's ARN, never a URL: the value stays in Secrets Manager), its CA
layer, and its policy granted to their role. The role's inline policy also reads the pooled secret, as it
did before the client existed: a deployed stack keeps that policy unchanged (the grant is the same read).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from lambdas.contract import FUNCTIONS, NODE_FUNCTIONS, SampleFunction
from lifeguard.aws import (
    NODE_RUNTIME,
    PYTHON_RUNTIME,
    Account,
    FunctionsConfig,
    LambdaPackage,
    PooledClient,
    policies,
)

SAMPLE_FUNCTIONS = (*FUNCTIONS, *NODE_FUNCTIONS)
"""Every function this component deploys (the config's checks count them: ``FunctionsConfig.attached_count``)."""


@dataclass(frozen=True)
class FunctionsArgs:
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    client: PooledClient
    """The attach unit: security group, environment, CA layer, and the policy granted to the role."""
    pooled_secret_arn: pulumi.Input[str]
    """The role's inline policy reads it too, as deployed stacks hold it."""
    package: LambdaPackage
    settings: FunctionsConfig
    log_retention_days: int
    account: Account
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
            for spec in SAMPLE_FUNCTIONS
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
        grant = args.client.grant(role)

        self.names = {}
        self.arns = {}
        deployments: list[tuple[SampleFunction, str, LambdaPackage]] = [
            *((spec, PYTHON_RUNTIME, args.package) for spec in FUNCTIONS),
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
                environment={"variables": args.client.environment},
                layers=[args.client.ca_layer_arn],
                vpc_config={"subnet_ids": args.subnet_ids, "security_group_ids": args.client.security_group_ids},
                logging_config={"log_format": "JSON", "log_group": log_groups[spec.key].name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, grant]),
            )
            self.names[spec.key] = function.name
            self.arns[spec.key] = function.arn

        self.role_arn = role.arn
        self.register_outputs({"names": self.names, "arns": self.arns, "roleArn": self.role_arn})
