"""AWS names built from the project and stack names: one helper, each service's rules.

Stack names may hold characters some services refuse (``prod.eu-1`` is a valid stack and an
invalid ECS family), and ``<project>-<stack>`` alone is not unique in an account: two Pulumi
organisations, or one stack name deployed to two regions, would share a CloudWatch dashboard
(dashboards are global) or a metrics dimension. So every such name is the readable
``<project>-<stack>-<part>...``, sanitised for the service, cut to fit its length limit, and
ended by a short digest of what makes the stack unique: organisation, project, stack and region.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pulumi

# 8 hex digits: 2^32 values, so stacks in one account do not meet by chance.
DIGEST_LENGTH = 8


@dataclass(frozen=True)
class NameRule:
    """What one AWS service accepts in a name."""

    service: str
    max_length: int
    invalid: re.Pattern[str]
    """Any character this matches is replaced with ``-``."""
    single_hyphens: bool = False
    """The service refuses ``--`` (runs of replaced characters are folded into one)."""
    lowercase: bool = False


# ECS: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens".
ECS_TASK_FAMILY = NameRule("ECS task-definition family", 255, re.compile(r"[^A-Za-z0-9_-]"))
# CloudWatch: "can contain only alphanumerics, dash (-) and underscore (_)", at most 255.
CLOUDWATCH_DASHBOARD = NameRule("CloudWatch dashboard", 255, re.compile(r"[^A-Za-z0-9_-]"))
# A dimension value may be 1024 characters; the dashboard's SEARCH expressions quote it, so keep
# to characters that need no quoting there.
METRIC_DIMENSION = NameRule("CloudWatch dimension value", 255, re.compile(r"[^A-Za-z0-9_.-]"))
# Secrets Manager names allow A-Z a-z 0-9 /_+=.@- up to 512; the stack part is a prefix that the
# key name and the provider's 26-character random suffix follow, so it gets a fraction of that.
# RDS: 1 to 63 letters, digits or hyphens, a letter first, no "--", no hyphen last; stored lower-case.
RDS_INSTANCE = NameRule("RDS instance identifier", 63, re.compile(r"[^a-z0-9-]"), single_hyphens=True,
                        lowercase=True)
# Lambda: a layer name is 1 to 140 of [a-zA-Z0-9-_].
LAMBDA_LAYER = NameRule("Lambda layer name", 140, re.compile(r"[^A-Za-z0-9_-]"))
# SSM Parameter Store: a-z A-Z 0-9 _.- (and / between levels), at most 1011 characters.
SSM_PARAMETER = NameRule("SSM parameter name", 255, re.compile(r"[^A-Za-z0-9_.-]"))
ROTATION_PARAMETER_LEAF = "app-password-rotation"
SECRET_NAME_PREFIX = NameRule("Secrets Manager name prefix", 128, re.compile(r"[^A-Za-z0-9_+=.@-]"))


def organization() -> str:
    """The stack's Pulumi organization; ``organization``, as self-managed backends name it, when unset."""
    return pulumi.get_organization() or "organization"


def stack_identity(region: str) -> str:
    """What makes this stack's names unique in an account."""
    return f"{organization()}/{pulumi.get_project()}/{pulumi.get_stack()}/{region}"


def stack_name(rule: NameRule, *parts: str, region: str) -> str:
    """``<project>-<stack>-<parts>-<digest>``, valid for ``rule`` and unique per stack and region."""
    identity = stack_identity(region)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:DIGEST_LENGTH]
    readable = "-".join((pulumi.get_project(), pulumi.get_stack(), *parts))
    readable = rule.invalid.sub("-", readable.lower() if rule.lowercase else readable)
    if rule.single_hyphens:
        readable = re.sub(r"-{2,}", "-", readable)
    readable = readable[: rule.max_length - DIGEST_LENGTH - 1].rstrip("-")
    return f"{readable}-{digest}"


def secret_name_prefix(region: str) -> str:
    """The name prefix of every secret the stack creates: ``<project>-<stack>-<digest>/``."""
    return f"{stack_name(SECRET_NAME_PREFIX, region=region)}/"


def metrics_service_name(region: str) -> str:
    """The ``Service`` dimension of this stack's pooler metrics: stable, and distinct per stack.

    Known before anything exists (the sidecar's environment and the alarms both need it, and the
    ECS service's generated name would make the task definition depend on its own service).
    """
    return stack_name(METRIC_DIMENSION, "pgbouncer", region=region)


def rotation_parameter_name(region: str) -> str:
    """The SSM parameter in which the migration job records the password rotation Postgres holds.

    ``/lifeguard/<project>-<stack>-<digest>/app-password-rotation``: known before anything exists (the
    program reads it at preview, :func:`lifeguard.aws.rotation.check_switch`), and under ``/lifeguard/``
    so that no project name starts it with the reserved ``aws`` or ``ssm``.
    """
    return f"/lifeguard/{stack_name(SSM_PARAMETER, region=region)}/{ROTATION_PARAMETER_LEAF}"
