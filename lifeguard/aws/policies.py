"""IAM policy documents, built as plain data from resolved ARNs.

Kept free of Pulumi so the tests can evaluate exactly what the components attach. Every
statement names concrete resources, except the few actions AWS only grants on ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Statement = dict[str, Any]
PolicyDocument = dict[str, Any]

VERSION = "2012-10-17"


def document(*statements: Statement) -> PolicyDocument:
    return {"Version": VERSION, "Statement": list(statements)}


@dataclass(frozen=True)
class Account:
    """Where the stack runs: what the trust policies pin the services to."""

    account_id: str
    partition: str
    region: str

    @classmethod
    def from_caller_arn(cls, caller_arn: str, account_id: str, region: str) -> Account:
        # arn:<partition>:sts::<account>:assumed-role/...: the partition is the second field.
        return cls(account_id=account_id, partition=caller_arn.split(":")[1], region=region)

    def ecs_source_arn(self) -> str:
        """What ECS sets as ``aws:SourceArn`` when it assumes a task's roles: a resource of this account and region."""
        return f"arn:{self.partition}:ecs:{self.region}:{self.account_id}:*"


def assume_role(service: str, account: Account, source_arn: str | None = None) -> PolicyDocument:
    """Trust policy letting one AWS service (``lambda.amazonaws.com``, ``ecs-tasks...``) assume the role,
    only on behalf of this account (``aws:SourceAccount``), and of ``source_arn`` where the service sets
    ``aws:SourceArn`` (ECS does; Lambda does not when it assumes an execution role): a service acting for
    another account cannot be made to use it (the confused deputy).
    """
    condition: dict[str, dict[str, str]] = {"StringEquals": {"aws:SourceAccount": account.account_id}}
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    return document(
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole", "Condition": condition}
    )


def read_secret(sid: str, secret_arn: str) -> Statement:
    """Read one secret's value, by its full ARN (never a wildcard or a name prefix)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": [secret_arn],
    }


def put_parameter(sid: str, parameter_arn: str) -> PolicyDocument:
    """Write one SSM parameter's value, by its full ARN (the migration job's record of a rotation)."""
    return document({"Sid": sid, "Effect": "Allow", "Action": ["ssm:PutParameter"], "Resource": parameter_arn})


def pull_image(repository_arn: str) -> list[Statement]:
    """What ECS needs to pull one ECR repository's images for a task."""
    return [
        {
            # GetAuthorizationToken has no resource-level permissions.
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": ["*"],
        },
        {
            "Sid": "EcrPull",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": [repository_arn],
        },
    ]


def write_logs(log_group_arn: str) -> Statement:
    """Create streams in and write to one log group (it is created by the stack, with retention)."""
    return {
        "Sid": "WriteLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"{log_group_arn}:log-stream:*"],
    }


def manage_lambda_enis() -> Statement:
    """The network-interface actions a VPC function's role needs (those of AWSLambdaVPCAccessExecutionRole)."""
    return {
        "Sid": "VpcNetworkInterfaces",
        "Effect": "Allow",
        "Action": [
            "ec2:AssignPrivateIpAddresses",
            "ec2:CreateNetworkInterface",
            "ec2:DeleteNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
            "ec2:UnassignPrivateIpAddresses",
        ],
        # Lambda creates the interfaces in subnets it picks at run time; AWS documents "*" here.
        "Resource": ["*"],
    }


def task_execution(repository_arn: str, log_group_arn: str, secrets: Mapping[str, str]) -> PolicyDocument:
    """An ECS task execution role: pull one image, write one log group, read the secrets it injects.

    ``secrets`` maps a statement id to one secret's ARN: one statement per secret, so a review
    (and the tests' policy evaluation) sees what each grant is for.
    """
    if not secrets:
        raise ValueError("a task execution role here always reads at least one secret")
    return document(
        *pull_image(repository_arn),
        write_logs(log_group_arn),
        *(read_secret(sid, arn) for sid, arn in secrets.items()),
    )


def function_role(log_group_arns: list[str], secret_arn: str) -> PolicyDocument:
    """The functions' role: VPC interfaces, their own log groups, the pooled secret."""
    logs = write_logs(log_group_arns[0])
    logs["Resource"] = [f"{arn}:log-stream:*" for arn in log_group_arns]
    return document(manage_lambda_enis(), logs, read_secret("ReadPooledDatabaseUrl", secret_arn))


def read_pooled_secret(secret_arn: str, kms_key_arn: str | None = None) -> PolicyDocument:
    """What a pooled client needs of IAM: read the one pooled secret (by its full ARN) and, when the secret is
    encrypted with a customer managed key, decrypt with that key only through Secrets Manager in the
    secret's region (``kms:ViaService``), so the grant is no general use of the key."""
    statements = [read_secret("ReadPooledDatabaseUrl", secret_arn)]
    if kms_key_arn is not None:
        region = secret_arn.split(":")[3]
        statements.append({
            "Sid": "DecryptPooledDatabaseUrl",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [kms_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
        })
    return document(*statements)
