"""AWS clients for the pipeline commands, and one wording for the ways AWS calls fail before an answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient

# Standard retry mode backs off on throttling (DescribeTasks and GetLogEvents are polled).
_RETRIES = Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="lifeguard-pipeline")
# A synchronous invocation lasts as long as the function runs (up to Lambda's 900 s ceiling).
_INVOKE = _RETRIES.merge(Config(read_timeout=900, connect_timeout=10))

AWS_ERRORS = (BotoCoreError, ClientError)


def ecs_client(region: str | None) -> ECSClient:
    return boto3.session.Session(region_name=region).client("ecs", config=_RETRIES)


def logs_client(region: str | None) -> CloudWatchLogsClient:
    return boto3.session.Session(region_name=region).client("logs", config=_RETRIES)


def lambda_client(region: str | None) -> LambdaClient:
    return boto3.session.Session(region_name=region).client("lambda", config=_INVOKE)


def explain_aws_error(exc: BotoCoreError | ClientError) -> str:
    """A sentence for an AWS failure; botocore's own text is kept (it names the call and the code)."""
    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found: configure them (OIDC role in CI, `aws configure`, AWS_PROFILE "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, NoRegionError):
        return "no AWS region configured: pass --region or set AWS_REGION"
    return str(exc)
