"""Bad args to the public components fail in the constructor, before anything is registered, with a
message that names the field to change (the same from a Python program and through the provider)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from lifeguard.aws.app_role import AppRoleCredentials, AppRoleCredentialsArgs
from lifeguard.aws.component_args import number, whole_number
from lifeguard.aws.pooler import Pooler, PoolerArgs, PoolerArgsError, sizing
from lifeguard.aws.pooler_tls import PoolerCertificateAuthority, PoolerCertificateAuthorityArgs
from lifeguard.aws.secrets import ConnectionSecrets, ConnectionSecretsArgs

WIRING: dict[str, Any] = {
    "vpc_id": "vpc-0123456789abcdef0", "subnet_ids": ["subnet-0a", "subnet-0b"],
    "load_balancer_security_group_id": "sg-0nlb", "task_security_group_id": "sg-0pooler",
    "database_address": "db.example.internal", "db_name": "app", "max_connections": 100,
    "username": "app_user", "verifier": "SCRAM-SHA-256$16:...", "ca_cert_pem": "-", "ca_private_key_pem": "-",
}


def pooler_args(**overrides: Any) -> PoolerArgs:
    return cast(PoolerArgs, {**WIRING, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_tasks": 1}, "min_tasks: must be at least 2"),
        ({"max_tasks": 1}, "max_tasks: must be at least min_tasks"),
        ({"cpu": 2048}, "cpu: must be at most 1024"),
        ({"cpu": 512, "memory_mb": 512}, "memory_mb: Fargate allows 1024 to 4096 MiB"),
        ({"architecture": "sparc"}, "architecture: must be one of x86_64, arm64"),
        ({"db_name": "pgbouncer"}, "db_name: must start with a letter"),
        ({"max_connections": 10, "max_tasks": 8}, "max_connections"),
        ({"log_retention_days": 2}, "log_retention_days: must be one of CloudWatch's values"),
        ({"min_tasks": 2.5}, "min_tasks must be a whole number"),
        ({"min_tasks": "2"}, "min_tasks must be a whole number"),
        ({"secret_recovery_window_days": 3}, "secret_recovery_window_days must be 0 or 7 to 30"),
        ({"metrics_namespace": "AWS/ECS"}, "metrics_namespace must not start with 'AWS/'"),
        ({"metrics_service": "has space"}, "metrics_service must be letters"),
        ({"image_context": "/nonexistent"}, "image_context '/nonexistent' has no Dockerfile"),
    ],
)
def test_bad_pooler_args_are_named(overrides: dict[str, Any], message: str) -> None:
    # No mocks are set: a component that registered anything before failing would fail differently.
    with pytest.raises(PoolerArgsError, match=message.replace("(", r"\(")):
        Pooler("pooler", pooler_args(**overrides))


def test_the_pooler_sizes_as_the_sample_stack_does() -> None:
    """Defaults are the config keys' (lifeguard/aws/keys.py), and the pool comes from the same budget."""
    cfg = sizing(pooler_args())
    assert (cfg.min_tasks, cfg.max_tasks, cfg.cpu, cfg.memory_mb, cfg.architecture) == (2, 4, 512, 1024, "x86_64")
    # (100 - 5 reserved - 2 migration) / (4 tasks x 200 % surge) = 11 per task, floored.
    assert cfg.pool_size == 11 and cfg.settings.default_pool_size == 11
    # Whole numbers from the wire (doubles) size the same.
    assert sizing(pooler_args(max_connections=100.0, max_tasks=4.0)) == cfg


def test_a_ca_common_name_over_64_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="common_name must be 1 to 64 characters"):
        PoolerCertificateAuthority("ca", PoolerCertificateAuthorityArgs(common_name="x" * 65))


@pytest.mark.parametrize("value", [True, 1.5, float("nan"), "3", None])
def test_whole_numbers_refuse_what_is_not_one(value: object) -> None:
    with pytest.raises(ValueError, match="field must be a whole number"):
        whole_number(value, "field")


def test_numbers() -> None:
    assert (whole_number(3, "f"), whole_number(3.0, "f"), number(2, "f"), number(2.5, "f")) == (3, 3, 2.0, 2.5)
    with pytest.raises(ValueError, match="field must be a number"):
        number(float("inf"), "field")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"recovery_window_days": 3}, "recovery_window_days must be 0 or 7 to 30"),
        ({"password": "x"}, "the direct URL needs username and database_host with password"),
        ({"password": "x", "username": "owner"}, "the direct URL needs username and database_host"),
    ],
)
def test_bad_connection_secrets_args_are_named(overrides: dict[str, Any], message: str) -> None:
    args = {"app_username": "app_user", "app_password": "p", "db_name": "app", "pooler_host": "nlb", **overrides}
    with pytest.raises(ValueError, match=message):
        ConnectionSecrets("connection", cast(ConnectionSecretsArgs, args))


@pytest.mark.parametrize(("iterations", "message"), [(8, "scram_iterations must be from 16"),
                                                     (16.5, "scram_iterations must be a whole number")])
def test_bad_role_iterations_are_named(iterations: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AppRoleCredentials("app-role", cast(AppRoleCredentialsArgs, {"username": "app_user",
                                                                     "scram_iterations": iterations}))
