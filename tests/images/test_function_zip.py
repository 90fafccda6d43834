"""The function zip, run the way Lambda runs it: unpacked at /var/task, the runtime's Python, nothing else.

``handler(event, context)`` against the pooler task, through the functions' own DATABASE_URL (the
NLB's name, mapped to loopback). On AWS the functions read that URL from Secrets Manager with the
boto3 Lambda provides; here the secret's value is handed over as DATABASE_URL, the client's local
form, because boto3 is not in the zip and must not be on the path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra import SAMPLE_REQUIREMENTS
from lifeguard.aws import lambda_package
from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.ecs_run import TaskRun
from tests.images.support import RenderedStack
from tests.infra.infra_harness import REPO_ROOT

RUNTIME_IMAGE = "lifeguard-lambda-python:local"
RUNTIME_CONTEXT = Path(__file__).with_name("runtime")


@pytest.fixture(scope="module")
def runtime_image(engine: DockerEngine, images: object) -> str:
    engine.build(RUNTIME_CONTEXT, RUNTIME_IMAGE)
    return RUNTIME_IMAGE


def unpack(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # Lambda's /var/task is readable by the runtime user
    return target


def invoke(engine: DockerEngine, image: str, task: Path, rendered: RenderedStack,
           calls: list[tuple[str, dict[str, Any]]]) -> subprocess.CompletedProcess[str]:
    script = (RUNTIME_CONTEXT / "invoke.py").read_text()
    opt = rendered.unpack_layers(task.parent / "opt")
    command = [
        engine.client, "run", "--rm", "--network", "host", "--add-host", f"{rendered.pooler_endpoint}:127.0.0.1",
        "--read-only", "--volume", f"{task}:/var/task:ro", "--volume", f"{opt}:/opt:ro", "--workdir", "/var/task",
        "--env", "DATABASE_URL", "--env", "AWS_LAMBDA_FUNCTION_NAME=lifeguard-zip-test",
        image, "python3", "-I", "-S", "-c", script, json.dumps(calls),
    ]
    return subprocess.run(command, env={**engine.env, "DATABASE_URL": rendered.secret("DATABASE_URL")},
                          capture_output=True, text=True, check=False, timeout=180)


def test_runtime_is_the_python_that_runs_here(rendered: RenderedStack) -> None:
    assert rendered.runtime == lambda_package.RUNTIME == "python3.13"


def test_handlers_run_from_the_zip_against_the_pooler_task(
    pooler_task: TaskRun, engine: DockerEngine, runtime_image: str, rendered: RenderedStack, tmp_path: Path
) -> None:
    task = unpack(rendered.function_zip, tmp_path / "task")
    read, charge = rendered.handlers["functions-read-invoices"], rendered.handlers["functions-charge-credits"]
    direct = rendered.secret("DATABASE_URL_UNPOOLED").split("?")[0]
    with psycopg.connect(direct, hostaddr="127.0.0.1", sslmode="require") as conn:
        row = conn.execute("SELECT id, credits FROM orgs WHERE name = 'acme'").fetchone()
    assert row is not None
    acme, credits = row
    event = {"org_id": acme, "amount": 7, "idempotency_key": f"zip-{tmp_path.name}"}
    result = invoke(engine, runtime_image, task, rendered, [(read, {"org_id": acme}), (charge, event), (charge, event)])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["python"] == rendered.runtime
    # psycopg's binary implementation (bundled libpq) from the zip, nothing from the image's Python.
    assert report["psycopg_impl"] == "binary" and report["psycopg_file"].startswith("/var/task/")
    assert not any("packages" in entry for entry in report["path"]), report["path"]
    first, charged, replayed = report["responses"]
    assert first["statusCode"] == 200 and json.loads(first["body"])["org"]["credits"] == credits
    assert charged["statusCode"] == 200 and replayed["statusCode"] == 200
    assert json.loads(charged["body"])["charge_id"] == json.loads(replayed["body"])["charge_id"]
    with psycopg.connect(direct, hostaddr="127.0.0.1", sslmode="require") as conn:
        assert conn.execute("SELECT credits FROM orgs WHERE id = %s", (acme,)).fetchone() == (credits - 7,)


def test_a_zip_with_wheels_for_another_python_fails(
    pooler_task: TaskRun, engine: DockerEngine, runtime_image: str, rendered: RenderedStack, tmp_path: Path
) -> None:
    """The check above would catch a wrong wheel tag: cp312 wheels do not load in the runtime's Python."""
    wrong = lambda_package.build(REPO_ROOT / "lambdas", "x86_64", tmp_path / "build", SAMPLE_REQUIREMENTS,
                                 python_version="3.12")
    task = unpack(wrong.path, tmp_path / "task")
    result = invoke(engine, runtime_image, task, rendered,
                    [(rendered.handlers["functions-read-invoices"], {"org_id": 1})])
    assert result.returncode != 0 or json.loads(result.stdout)["responses"][0]["statusCode"] != 200
    assert "psycopg" in result.stderr + result.stdout
    shutil.rmtree(task)
