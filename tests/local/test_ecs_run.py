"""Translating an ECS task definition to `docker run` (running it is tested in tests/images)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.ecs_run import TaskRun, TranslationError, plan_task

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-AbCdEf"
TASK: dict[str, Any] = {
    "family": "pooler-dev",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "512",
    "memory": "1024",
    "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
    "executionRoleArn": "arn:aws:iam::123456789012:role/x",
    "volumes": [{"name": "sock"}],
    "containerDefinitions": [
        {"name": "main", "image": "repo/main@sha256:1", "essential": True,
         "portMappings": [{"containerPort": 6432, "protocol": "tcp"}],
         "environment": [{"name": "SETTINGS", "value": "{}"}],
         "secrets": [{"name": "CREDENTIALS", "valueFrom": SECRET_ARN}],
         "mountPoints": [{"sourceVolume": "sock", "containerPath": "/run/sock", "readOnly": False}],
         "ulimits": [{"name": "nofile", "softLimit": 65535, "hardLimit": 65535}],
         "stopTimeout": 120, "readonlyRootFilesystem": True, "user": "10001:10001",
         "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "retries": 3},
         "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}},
        {"name": "side", "image": "repo/main@sha256:1", "essential": False,
         "entryPoint": ["python", "-m", "side"], "command": ["--once"], "memoryReservation": 64,
         "dependsOn": [{"containerName": "main", "condition": "START"}],
         "mountPoints": [{"sourceVolume": "sock", "containerPath": "/run/sock", "readOnly": True}]},
    ],
}


def plan(task: dict[str, Any], **kwargs: Any) -> list[Any]:
    return plan_task(task, images=lambda uri: "local:" + uri.split("@")[0].rsplit("/", 1)[-1],
                     secrets={SECRET_ARN: "s3cret"}, prefix="t1", hosts={"db.example": "127.0.0.1"}, **kwargs)


def test_each_field_becomes_its_docker_run_flag() -> None:
    main, side = plan(TASK, nofile_ceiling=20000)
    args = main.run_args
    assert args[:4] == ("--name", "t1-main", "--network", "host")
    assert "--add-host" in args and "db.example:127.0.0.1" in args
    assert args[args.index("SETTINGS") - 1:args.index("SETTINGS") + 1] == ("--env", "SETTINGS")
    assert main.env == {"SETTINGS": "{}", "CREDENTIALS": "s3cret"}
    assert "s3cret" not in " ".join(args)  # values go through the client's environment
    assert "nofile=20000:20000" in args and main.notes  # lowered, and said so
    assert "t1-sock:/run/sock" in args and "--read-only" in args and "--stop-timeout" in args
    assert args[args.index("--user") + 1] == "10001:10001"
    assert args[args.index("--health-cmd") + 1] == "true" and args[-1] == "local:main"
    assert main.ports == (6432,) and main.stop_timeout_s == 120
    assert side.run_args[2:4] == ("--network", "container:t1-main")
    assert "t1-sock:/run/sock:ro" in side.run_args and "64m" in side.run_args
    assert side.run_args[-4:] == ("local:main", "-m", "side", "--once")
    assert side.run_args[side.run_args.index("--entrypoint") + 1] == "python"
    assert side.depends_on == (("main", "START"),) and not side.essential


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("container", "linuxParameters", {"initProcessEnabled": True}),
        ("container", "privileged", True),
        ("task", "pidMode", "task"),
        ("task", "ephemeralStorage", {"sizeInGiB": 30}),
    ],
)
def test_an_unknown_field_fails(where: str, field: str, value: object) -> None:
    task = copy.deepcopy(TASK)
    (task["containerDefinitions"][0] if where == "container" else task)[field] = value
    with pytest.raises(TranslationError, match=field):
        plan(task)


def test_a_secret_the_stand_in_does_not_hold_fails() -> None:
    task = copy.deepcopy(TASK)
    task["containerDefinitions"][0]["secrets"][0]["valueFrom"] = SECRET_ARN + "-other"
    with pytest.raises(TranslationError, match="stand-in does not hold"):
        plan(task)


def test_a_task_role_needs_its_stand_in_whose_environment_every_container_gets() -> None:
    task = {**copy.deepcopy(TASK), "taskRoleArn": "arn:aws:iam::123456789012:role/job-task"}
    with pytest.raises(TranslationError, match="runs as task role arn:aws:iam::123456789012:role/job-task"):
        plan(task)
    stand_in = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5001", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s3"}
    for container in plan(task, task_role=stand_in):
        assert stand_in.items() <= container.env.items()
        assert "s3" not in " ".join(container.run_args)  # through the client's environment, like the secrets
    # Without a task role nothing of the stand-in reaches the task.
    assert all("AWS_ENDPOINT_URL" not in c.env for c in plan(TASK, task_role=stand_in))


def test_another_architecture_fails() -> None:
    with pytest.raises(TranslationError, match="this machine runs arm64"):
        plan(TASK, machine_architecture="arm64")


def plan_secret(value_from: str, stored: str) -> dict[str, str]:
    task = copy.deepcopy(TASK)
    task["containerDefinitions"][0]["secrets"] = [{"name": "VERIFIER", "valueFrom": value_from}]
    (main, _side) = plan_task(task, images=lambda uri: "image", secrets={SECRET_ARN: stored}, prefix="t1")
    return dict(main.env)


def test_a_json_key_suffix_injects_that_key_of_the_secret() -> None:
    # ECS's "<arn>:<json-key>:<version-stage>:<version-id>" form, stage and version left empty.
    env = plan_secret(f"{SECRET_ARN}:password::", '{"username": "app", "password": "SCRAM-SHA-256$x"}')
    assert env["VERIFIER"] == "SCRAM-SHA-256$x"
    assert plan_secret(f"{SECRET_ARN}:::", "whole")["VERIFIER"] == "whole"


@pytest.mark.parametrize(
    ("suffix", "stored", "message"),
    [
        (":password::", '{"username": "app"}', "no such string"),
        (":password::", "not json", "not JSON"),
        (":password::", '{"password": 7}', "no such string"),
        (":password:AWSPREVIOUS:", '{"password": "p"}', "only the current version"),
        (":password", '{"password": "p"}', "does not hold"),
    ],
)
def test_a_json_key_the_secret_cannot_give_fails(suffix: str, stored: str, message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        plan_secret(SECRET_ARN + suffix, stored)


class _RecordingEngine(DockerEngine):
    """An engine that runs no docker command, only records them (removing needs no running engine)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.commands: list[tuple[str, ...]] = []

    def docker(self, *args: str, timeout: float = 300, check: bool = True,
               input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
        self.commands.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")


def test_removing_before_a_start_clears_the_containers_an_earlier_run_left(tmp_path: Path) -> None:
    # The local stack removes first: a container of an earlier `up` that was never removed holds its name.
    engine = _RecordingEngine(tmp_path)
    TaskRun(engine, plan(TASK)).remove()
    removed = {args[-1] for args in engine.commands if args[:2] == ("rm", "--force")}
    assert removed == {"t1-main", "t1-side"}
    assert ("volume", "rm", "--force", "t1-sock") in engine.commands
