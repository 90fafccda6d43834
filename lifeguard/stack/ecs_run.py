"""Run an ECS task definition with Docker, field by field, the way Fargate would run it.

Each field of a container definition is translated to what ``docker run`` does with it; a field
this module does not know raises :class:`TranslationError`, so a field added to the task
definition cannot go unnoticed (the image tests fail until it is translated here).

What stands in for AWS:
- ``awsvpc``: the first container gets ``--network host`` and the others join its network namespace
  (``--network container:NAME``), as a Fargate task's containers share one ENI; names the task
  resolves (the RDS endpoint, the NLB) are mapped with ``--add-host``.
- The task role: ECS serves the role's credentials to the containers; here ``task_role`` is the
  environment that stands in for them (an endpoint and credentials, e.g. a moto server's).
- Secrets Manager: a mapping from secret ARN to its value, injected as environment like ECS does;
  a ``valueFrom`` of ``<arn>:<json-key>::`` injects that key of the secret's JSON, as ECS does.
  Values reach ``docker`` through its own environment (``--env NAME``), never its command line.
- The task volume: a Docker named volume per task, which Docker fills from the image's ``VOLUME``
  directory (owner and mode included) as ECS does.
- ``awslogs``: Docker's default log driver; :meth:`TaskRun.logs` reads what CloudWatch would hold.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifeguard.stack.docker_engine import DockerEngine, EngineError
from lifeguard.stack.system import port_in_use

# Task-level fields: translated, checked, or (with the reason) not enforced on one machine.
_TASK_FIELDS = {
    "family", "containerDefinitions", "networkMode", "volumes", "runtimePlatform", "executionRoleArn",
    "requiresCompatibilities", "taskRoleArn",
    # Fargate's task size: billing and placement, not a behaviour of the containers under test.
    "cpu", "memory",
}
_CONTAINER_FIELDS = {
    "name", "image", "essential", "entryPoint", "command", "environment", "secrets", "user", "ulimits",
    "mountPoints", "portMappings", "stopTimeout", "healthCheck", "readonlyRootFilesystem", "dependsOn",
    "memoryReservation", "memory", "logConfiguration", "workingDirectory",
}
_ARCHITECTURES = {"X86_64": "amd64", "ARM64": "arm64"}
CAP_SYS_RESOURCE = 24


def machine_architecture() -> str:
    """This machine's CPU as Docker names it (``amd64``, ``arm64``)."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def machine_nofile_ceiling() -> int | None:
    """The open-files hard limit containers can get here: ours, unless we may raise it."""
    caps = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    effective = next((int(line.split()[1], 16) for line in caps.splitlines() if line.startswith("CapEff:")), 0)
    if effective & (1 << CAP_SYS_RESOURCE):
        return None
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else int(hard)


class TranslationError(ValueError):
    """The task definition has something this translation does not know how to run."""


SecretStore = Mapping[str, str]
"""Secret ARN -> secret string: the local stand-in for Secrets Manager."""


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    docker_name: str
    run_args: tuple[str, ...]
    """``docker run`` arguments, without values of environment variables."""
    env: Mapping[str, str] = field(repr=False)
    """Values for the ``--env NAME`` arguments (environment and secrets): passed to the client's environment."""
    essential: bool
    depends_on: tuple[tuple[str, str], ...]
    stop_timeout_s: int | None
    ports: tuple[int, ...]
    notes: tuple[str, ...] = ()
    """Where this machine cannot do what the definition asks, and what it does instead."""


def _only(item: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise TranslationError(
            f"{where}: no Docker translation for {', '.join(unknown)}; add it to lifeguard.stack.ecs_run"
        )


def _health_args(check: Mapping[str, Any], where: str) -> list[str]:
    _only(check, {"command", "interval", "timeout", "retries", "startPeriod"}, f"{where}.healthCheck")
    command = list(check["command"])
    if command[:1] == ["CMD-SHELL"] and len(command) == 2:
        test = command[1]
    elif command[:1] == ["CMD"]:
        # Docker's --health-cmd is a shell string; quote each word as ECS passes them as argv.
        test = " ".join(json.dumps(word) for word in command[1:])
    else:
        raise TranslationError(f"{where}.healthCheck.command must start with CMD or CMD-SHELL")
    args = ["--health-cmd", test]
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("startPeriod", "--health-start-period")):
        if key in check:
            args += [flag, f"{int(check[key])}s"]
    if "retries" in check:
        args += ["--health-retries", str(int(check["retries"]))]
    return args


# A Secrets Manager ARN has 7 colon-separated fields (the secret name holds no colon); ECS's
# valueFrom may add three: ``<arn>:<json-key>:<version-stage>:<version-id>``, each possibly empty.
_SECRET_ARN_FIELDS = 7


def _secret_value(value_from: str, secrets: SecretStore, where: str) -> str:
    """What ECS injects for ``valueFrom``: the whole secret string, or one key of its JSON."""
    if value_from in secrets:
        return secrets[value_from]
    fields = value_from.split(":")
    if fields[2:3] != ["secretsmanager"] or len(fields) != _SECRET_ARN_FIELDS + 3:
        raise TranslationError(f"{where} comes from {value_from}, which the stand-in does not hold")
    arn = ":".join(fields[:_SECRET_ARN_FIELDS])
    json_key, stage, version = fields[_SECRET_ARN_FIELDS:]
    if stage or version:
        raise TranslationError(f"{where} asks for version {stage or version} of {arn}; the stand-in holds only "
                               "the current version (leave <version-stage> and <version-id> empty)")
    if arn not in secrets:
        raise TranslationError(f"{where} comes from {arn}, which the stand-in does not hold")
    if not json_key:
        return secrets[arn]
    # ECS fails the task (ResourceInitializationError) when the secret is not JSON or lacks the key.
    try:
        document = json.loads(secrets[arn])
    except json.JSONDecodeError:
        raise TranslationError(f"{where} asks for key {json_key!r} of {arn}, whose value is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get(json_key), str):
        raise TranslationError(f"{where} asks for key {json_key!r} of {arn}, whose JSON has no such string")
    return str(document[json_key])


def plan_task(
    task_definition: Mapping[str, Any],
    *,
    images: Callable[[str], str],
    secrets: SecretStore,
    prefix: str,
    hosts: Mapping[str, str] | None = None,
    machine_architecture: str = "amd64",
    nofile_ceiling: int | None = None,
    task_role: Mapping[str, str] | None = None,
) -> list[ContainerPlan]:
    """Translate ``task_definition`` (camelCase, as ECS takes it) to one plan per container.

    ``images`` maps the definition's image URI to a local image; ``hosts`` maps names the task
    resolves to addresses (``--add-host``); ``nofile_ceiling`` is the highest open-files limit
    this machine can grant (see :func:`machine_nofile_ceiling`), noted in the plan when lowered.
    ``task_role``: the environment standing in for the task role's credentials (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ...), required when the definition names a task role: its code calls AWS.
    """
    family = str(task_definition.get("family", "task"))
    _only(task_definition, _TASK_FIELDS, f"task definition {family}")
    if task_definition.get("taskRoleArn") and task_role is None:
        raise TranslationError(f"{family} runs as task role {task_definition['taskRoleArn']}: give plan_task the "
                               "AWS stand-in its calls go to (task_role: an endpoint and credentials)")
    role_env = dict(task_role or {}) if task_definition.get("taskRoleArn") else {}
    if task_definition.get("networkMode") != "awsvpc":
        raise TranslationError(f"{family}: only networkMode awsvpc is translated (one network namespace per task)")
    runtime_platform = task_definition.get("runtimePlatform") or {}
    _only(runtime_platform, {"cpuArchitecture", "operatingSystemFamily"}, f"{family}.runtimePlatform")
    wanted = _ARCHITECTURES.get(str(runtime_platform.get("cpuArchitecture", "X86_64")))
    if wanted != machine_architecture:
        raise TranslationError(
            f"{family} is for {runtime_platform.get('cpuArchitecture')}; this machine runs {machine_architecture}"
        )
    volumes: dict[str, str] = {}
    for volume in task_definition.get("volumes") or []:
        # A volume with only a name is Fargate's task-scoped bind mount; host paths and EFS are not translated.
        _only(volume, {"name"}, f"{family}.volumes")
        volumes[volume["name"]] = f"{prefix}-{volume['name']}"
    definitions = task_definition["containerDefinitions"]
    if isinstance(definitions, str):
        definitions = json.loads(definitions)
    plans: list[ContainerPlan] = []
    first = f"{prefix}-{definitions[0]['name']}"
    for index, container in enumerate(definitions):
        where = f"{family}/{container.get('name')}"
        _only(container, _CONTAINER_FIELDS, where)
        docker_name = f"{prefix}-{container['name']}"
        args: list[str] = ["--name", docker_name, "--network", "host" if index == 0 else f"container:{first}"]
        if index == 0:
            for name, address in sorted((hosts or {}).items()):
                args += ["--add-host", f"{name}:{address}"]
        env: dict[str, str] = dict(role_env)
        notes: list[str] = []
        for variable in container.get("environment") or []:
            _only(variable, {"name", "value"}, f"{where}.environment")
            env[variable["name"]] = str(variable["value"])
        for secret in container.get("secrets") or []:
            _only(secret, {"name", "valueFrom"}, f"{where}.secrets")
            env[secret["name"]] = _secret_value(str(secret["valueFrom"]), secrets, f"{where}: secret {secret['name']}")
        for name in env:
            args += ["--env", name]
        if "user" in container:
            args += ["--user", str(container["user"])]
        for limit in container.get("ulimits") or []:
            _only(limit, {"name", "softLimit", "hardLimit"}, f"{where}.ulimits")
            soft, hard = int(limit["softLimit"]), int(limit["hardLimit"])
            if limit["name"] == "nofile" and nofile_ceiling is not None and hard > nofile_ceiling:
                # Raising a hard limit needs CAP_SYS_RESOURCE, which a sandbox may not grant; Fargate can.
                notes.append(f"{where}: nofile {soft}:{hard} lowered to this machine's hard limit {nofile_ceiling}")
                soft, hard = min(soft, nofile_ceiling), nofile_ceiling
            args += ["--ulimit", f"{limit['name']}={soft}:{hard}"]
        for mount in container.get("mountPoints") or []:
            _only(mount, {"sourceVolume", "containerPath", "readOnly"}, f"{where}.mountPoints")
            if mount["sourceVolume"] not in volumes:
                raise TranslationError(f"{where}: mount of undeclared volume {mount['sourceVolume']}")
            suffix = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{volumes[mount['sourceVolume']]}:{mount['containerPath']}{suffix}"]
        ports: list[int] = []
        for mapping in container.get("portMappings") or []:
            _only(mapping, {"containerPort", "hostPort", "protocol"}, f"{where}.portMappings")
            if mapping.get("protocol", "tcp") != "tcp" or mapping.get("hostPort", mapping["containerPort"]) != mapping[
                "containerPort"
            ]:
                raise TranslationError(f"{where}: awsvpc port mappings are tcp with hostPort == containerPort")
            # awsvpc: the container's port is the task's; on the host network it is the machine's.
            ports.append(int(mapping["containerPort"]))
        stop_timeout = container.get("stopTimeout")
        if stop_timeout is not None:
            args += ["--stop-timeout", str(int(stop_timeout))]
        if "healthCheck" in container:
            args += _health_args(container["healthCheck"], where)
        if container.get("readonlyRootFilesystem"):
            args.append("--read-only")
        if "memoryReservation" in container:
            args += ["--memory-reservation", f"{int(container['memoryReservation'])}m"]
        if "memory" in container:
            args += ["--memory", f"{int(container['memory'])}m"]
        if "workingDirectory" in container:
            args += ["--workdir", str(container["workingDirectory"])]
        log = container.get("logConfiguration")
        if log is not None:
            _only(log, {"logDriver", "options"}, f"{where}.logConfiguration")
            if log["logDriver"] != "awslogs":
                raise TranslationError(f"{where}: only the awslogs log driver is translated")
        depends = []
        for dependency in container.get("dependsOn") or []:
            _only(dependency, {"containerName", "condition"}, f"{where}.dependsOn")
            if dependency["condition"] not in ("START", "HEALTHY", "COMPLETE", "SUCCESS"):
                raise TranslationError(f"{where}: unknown dependsOn condition {dependency['condition']}")
            depends.append((str(dependency["containerName"]), str(dependency["condition"])))
        entry = list(container.get("entryPoint") or [])
        if entry:
            args += ["--entrypoint", entry[0]]
        args.append(images(str(container["image"])))
        args += entry[1:] + [str(word) for word in container.get("command") or []]
        plans.append(ContainerPlan(
            name=str(container["name"]), docker_name=docker_name, run_args=tuple(args), env=env,
            essential=bool(container.get("essential", True)), depends_on=tuple(depends),
            stop_timeout_s=None if stop_timeout is None else int(stop_timeout), ports=tuple(ports),
            notes=tuple(notes),
        ))
    return plans


@dataclass
class TaskRun:
    """One task's containers on ``engine``, started in ``dependsOn`` order, stopped together."""

    engine: DockerEngine
    plans: Sequence[ContainerPlan]
    started: list[str] = field(default_factory=list)

    def plan(self, name: str) -> ContainerPlan:
        return next(plan for plan in self.plans if plan.name == name)

    def start(self, wait_s: float = 60) -> None:
        for plan in self.plans:
            for port in plan.ports:
                if port_in_use(port):
                    raise EngineError(f"port {port} (the task's containerPort) is in use on this machine; "
                                      "stop what listens there")
        for plan in self.plans:
            for dependency, condition in plan.depends_on:
                self._wait_for(self.plan(dependency).docker_name, condition, wait_s)
            if self.essential_exited():
                # ECS stops the task when an essential container exits; the rest never start.
                return
            # The values of --env NAME come from the client's environment: never on a command line.
            result = subprocess.run([self.engine.client, "run", "--detach", *plan.run_args],
                                    env={**self.engine.env, **plan.env}, capture_output=True, text=True,
                                    check=False, timeout=120)
            self.started.append(plan.docker_name)
            if result.returncode != 0 and self.essential_exited():
                return  # the essential container exited meanwhile: the task is stopping
            if result.returncode != 0:
                raise EngineError(f"docker run {plan.name} failed: {result.stderr.strip()[-2000:]}")

    def _wait_for(self, docker_name: str, condition: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            state = self.state(docker_name)
            if condition == "START" and state.get("Status") in ("running", "exited"):
                return
            if condition == "HEALTHY" and (state.get("Health") or {}).get("Status") == "healthy":
                return
            if condition in ("COMPLETE", "SUCCESS") and state.get("Status") == "exited":
                if condition == "COMPLETE" or state.get("ExitCode") == 0:
                    return
                raise EngineError(f"{docker_name} exited with {state.get('ExitCode')}; dependsOn SUCCESS fails")
            if time.monotonic() > deadline:
                raise EngineError(f"{docker_name} did not reach {condition} within {wait_s:.0f} s: {state}")
            time.sleep(0.2)

    def essential_exited(self) -> bool:
        return any(plan.essential and plan.docker_name in self.started
                   and self.state(plan.name).get("Status") == "exited" for plan in self.plans)

    def state(self, name: str) -> dict[str, Any]:
        docker_name = self.plan(name).docker_name if any(p.name == name for p in self.plans) else name
        result = self.engine.docker("inspect", "--format", "{{json .State}}", docker_name, check=False)
        return dict(json.loads(result.stdout)) if result.returncode == 0 else {}

    def wait(self, name: str, timeout: float = 300) -> int:
        """Wait for a container to exit; its exit code."""
        result = self.engine.docker("wait", self.plan(name).docker_name, timeout=timeout)
        return int(result.stdout.strip())

    def logs(self, name: str) -> str:
        result = self.engine.docker("logs", self.plan(name).docker_name, check=False)
        return result.stdout + result.stderr

    def stop(self, name: str | None = None, timeout: float = 300) -> None:
        """``docker stop``: the image's stop signal, then SIGKILL after the container's stopTimeout."""
        names = [self.plan(name).docker_name] if name else list(reversed(self.started))
        for docker_name in names:
            self.engine.docker("stop", docker_name, check=False, timeout=timeout)

    def remove(self) -> None:
        """Remove the task's containers (also those an earlier run of the same plans left) and its volumes."""
        for plan in reversed(self.plans):
            self.engine.docker("rm", "--force", plan.docker_name, check=False)
        self.started.clear()
        volumes = {
            plan.run_args[index + 1].split(":", 1)[0]
            for plan in self.plans for index, arg in enumerate(plan.run_args) if arg == "--volume"
        }
        for volume in sorted(volumes):
            self.engine.docker("volume", "rm", "--force", volume, check=False)
