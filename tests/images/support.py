"""Helpers the image tier's tests import (its fixtures stay in conftest.py)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lifeguard.stack.ecs_run import TaskRun
from lifeguard.stack.system import port_in_use
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from tests.infra.infra_harness import REPO_ROOT

CACHE_ENV = "LIFEGUARD_DOCKER_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "build" / "docker").resolve()


@dataclass(frozen=True)
class RenderedStack:
    """What the Pulumi program renders under the mocks, as plain data."""

    task_definitions: dict[str, dict[str, Any]]
    """By family, camelCase as ECS takes them."""
    secrets: dict[str, str] = field(repr=False)
    """Secret ARN -> value: the stand-in for Secrets Manager."""
    image_contexts: dict[str, str]
    """ECR repository URL -> build context folder name."""
    rds_address: str
    pooler_endpoint: str
    db_user: str
    """The RDS master user: owns the database, runs the migrations."""
    app_role: str
    """The application role the migration task provisions and the functions log in as, through PgBouncer."""
    db_name: str
    function_zip: Path
    handlers: dict[str, str]
    runtime: str
    layer_files: dict[str, str] = field(default_factory=dict)
    """The functions' layers as Lambda unpacks them under /opt: path -> text (the pooler's CA)."""

    def unpack_layers(self, target: Path) -> Path:
        """The functions' layers as Lambda unpacks them, for /opt (the pooler's CA, where the URL's
        sslrootcert points)."""
        for path, text in self.layer_files.items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(text)
        for entry in [target, *target.rglob("*")]:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        return target

    def pooled_ca_here(self) -> Path:
        """The pooled URL's ``sslrootcert`` (a path under the layers' /opt), unpacked on this machine."""
        root = self.unpack_layers(cache_dir() / "function-layers")
        query = parse_qs(urlsplit(self.secret("DATABASE_URL")).query)
        (ca,) = query["sslrootcert"]
        return root / Path(ca).relative_to("/opt")

    def task(self, component: str) -> dict[str, Any]:
        """The task definition of a component: its family is ``<project>-<stack>-<component>-<digest>``."""
        (found,) = [td for family, td in self.task_definitions.items() if f"-{component}-" in family]
        return found

    def secret(self, key_name: str) -> str:
        """A secret's value by its key name: the secret is named ``<stack prefix>/<key name>-<suffix>``."""
        (found,) = [value for arn, value in self.secrets.items() if f"/{key_name}-" in arn.split(":secret:", 1)[1]]
        return found


_STEP_ECHO = re.compile(r"Step \d+/\d+ : ")


def step_output(build_error: str) -> str:
    """What a failed build's steps printed, without Docker's echo of their commands.

    The legacy builder echoes each step (``Step 12/15 : RUN ...``) and ends with ``The command
    '...' returned a non-zero code``: a message written inside a RUN line appears there whether or
    not the step printed it, so a check that the step itself said it looks at the rest only.
    """
    # The first line is the error's header, followed by the output's tail, which may start mid-echo.
    lines = build_error.splitlines()[1:]
    return "\n".join(line for line in lines
                     if not _STEP_ECHO.search(line) and "returned a non-zero code" not in line)


def wait_for_pooler(run: TaskRun, timeout: float = 60) -> None:
    """PgBouncer listens once the entrypoint has rendered its config and exec'd it."""
    deadline = time.monotonic() + timeout
    (port,) = run.plan(POOLER_CONTAINER).ports
    while not port_in_use(port):
        state = run.state(POOLER_CONTAINER)
        if state.get("Status") == "exited" or time.monotonic() > deadline:
            logs = run.logs(POOLER_CONTAINER)[-3000:]
            raise AssertionError(f"PgBouncer did not start ({state.get('Status')}): {logs}")
        time.sleep(0.2)
