"""The Docker tier: both images built from their Dockerfiles and run as their task definitions say.

A private engine (lifeguard.stack.docker_engine) keeps its data root, the base image and every
built layer under ``$LIFEGUARD_DOCKER_CACHE`` (default ``build/docker`` in the repository), so a
second run rebuilds only what changed. It needs root; elsewhere the tier is skipped with a message
saying how to run it. ``LIFEGUARD_DOCKER_TESTS=0`` skips it, ``=1`` (the default when ``CI=true``)
makes an engine that cannot start an error.

What stands in for AWS: the Pulumi program, run under the mocks, renders the task definitions,
the secrets' values and the function zip; a local Postgres on the RDS port plays RDS (its
certificate names the RDS endpoint, and its CA is built into both images as the RDS bundle);
names the tasks resolve (RDS, NLB) map to 127.0.0.1; the secrets' values are the stand-in for
Secrets Manager; a moto server on the loopback is the AWS the migration task's role calls (the
stack's SSM parameter, in which the task records the password rotation it set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from lifeguard.aws.build_context import source_name
from lifeguard.stack.containers import BuiltImages, build_images
from lifeguard.stack.docker_engine import DockerEngine, install_missing_packages
from lifeguard.stack.ecs_run import TaskRun, machine_architecture, machine_nofile_ceiling, plan_task
from lifeguard.stack.postgres import PostgresCluster
from lifeguard.stack.system import LocalSetupError, free_port, own_for_service, port_in_use, running_as_root
from migrator.contract import APP_ROLE_ENV, ROTATION_PARAMETER_ENV
from migrator.contract import CONTAINER_NAME as MIGRATOR_CONTAINER
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from pgbouncer.tls import write_self_signed
from tests.images.support import RenderedStack, cache_dir, wait_for_pooler
from tests.infra.infra_harness import MOCK_PASSWORD, REGION, ProgramRun, example_stack_config, run_program

ENABLE_ENV = "LIFEGUARD_DOCKER_TESTS"
HOW_TO_ENABLE = (
    "the Docker image tier starts its own Docker engine, which needs root: run `sudo scripts/test` "
    f"(or set {ENABLE_ENV}=1 as root to make a failure to start it an error)"
)
RDS_PORT = 5432
NOT_RECORDED = "not-recorded-yet"
"""The rotation parameter's value before the migration task runs (the stack would create it with a number)."""


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    # CI must run the tier: there a missing engine is an error, never a skip.
    mode = os.environ.get(ENABLE_ENV) or ("1" if os.environ.get("CI") == "true" else "auto")
    if mode == "0":
        pytest.skip(f"{ENABLE_ENV}=0: Docker image tier turned off")
    if not running_as_root():
        if mode == "1":
            pytest.fail(HOW_TO_ENABLE)
        pytest.skip(HOW_TO_ENABLE)
    engine = DockerEngine(cache_dir())
    try:
        install_missing_packages()
        engine.start()
    except LocalSetupError as exc:
        if mode == "1":
            raise
        pytest.skip(f"the Docker image tier cannot start its engine here ({exc}); {ENABLE_ENV}=1 makes this an error")
    try:
        yield engine
    finally:
        engine.stop()


def _render(build_dir: Path) -> RenderedStack:
    # The example stack's functions are arm64; the zip that runs here is this machine's build of it.
    architecture = {"amd64": "x86_64", "arm64": "arm64"}[machine_architecture()]
    run: ProgramRun = run_program({**example_stack_config(), "lifeguard:functionArchitecture": architecture},
                                  build_dir)
    tasks = {}
    for resource in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        inputs = resource.input  # secret wrappers removed
        definition = {key: inputs(key) for key in resource.inputs}
        definition["containerDefinitions"] = json.loads(definition["containerDefinitions"])
        tasks[definition["family"]] = definition
    arns = {s.id: s.state["arn"] for s in run.of_type("aws:secretsmanager/secret:Secret")}
    secrets = {arns[v.input("secretId")]: str(v.input("secretString"))
               for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    contexts = {str(i.input("imageName")).rsplit(":", 1)[0]: source_name(Path(i.input("build")["context"]))
                for i in run.of_type("docker:index/image:Image")}
    database = run.one("aws:rds/instance:Instance")
    (migrator,) = tasks[next(family for family in tasks if "-migration-" in family)]["containerDefinitions"]
    environment = {variable["name"]: variable["value"] for variable in migrator["environment"]}
    # The Python functions' zip (the Node.js function's is run under real Node.js in tests/lambdas).
    functions = [f for f in run.of_type("aws:lambda/function:Function") if str(f.input("runtime")).startswith("python")]
    (archive,) = {str(f.inputs["code"].path) for f in functions}  # a pulumi.FileArchive
    (runtime,) = {str(f.input("runtime")) for f in functions}
    layer_files = {}
    for layer in run.of_type("aws:lambda/layerVersion:LayerVersion"):
        layer_files.update({path: asset.text for path, asset in layer.inputs["code"].assets.items()})
    return RenderedStack(
        layer_files=layer_files,
        task_definitions=tasks, secrets=secrets, image_contexts=contexts,
        rds_address=str(database.state["address"]),
        pooler_endpoint=str(run.one("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]),
        db_user=str(database.input("username")), app_role=environment[APP_ROLE_ENV],
        db_name=str(database.input("dbName")),
        function_zip=Path(archive), handlers={f.name: str(f.input("handler")) for f in functions}, runtime=runtime,
    )


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> RenderedStack:
    return _render(tmp_path_factory.mktemp("images-build"))


@pytest.fixture(scope="session")
def rds_cert(rendered: RenderedStack) -> tuple[Path, Path]:
    """The stand-in RDS server certificate (its own CA), kept in the cache so the images' CA layer is too."""
    names = ("localhost", "127.0.0.1", rendered.rds_address)
    directory = cache_dir() / "rds-stand-in"
    stamp = directory / "names.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != list(names):
        shutil.rmtree(directory, ignore_errors=True)
        write_self_signed(directory, names=names)
        stamp.write_text(json.dumps(list(names)))
    return directory / "server.crt", directory / "server.key"


@pytest.fixture(scope="session")
def images(engine: DockerEngine, rds_cert: tuple[Path, Path]) -> BuiltImages:
    # Tagged apart from `lifeguard local up --images`, whose images hold the local stack's CA.
    return build_images(engine, ca_bundle=rds_cert[0], tag="test")


@pytest.fixture(scope="session")
def rds(state_root: Path, rendered: RenderedStack, rds_cert: tuple[Path, Path]) -> Iterator[PostgresCluster]:
    """A local Postgres on the RDS port, with the program's master user, password and database.

    The master user is what RDS makes it: not a superuser, but CREATEROLE (rds_superuser's right the
    migration task needs to provision the application role), owning the database.
    """
    if port_in_use(RDS_PORT):
        pytest.fail(f"port {RDS_PORT} is in use: the pooler task reaches 'RDS' on the port its settings name; "
                    "stop the Postgres listening there")
    cluster = PostgresCluster(root=state_root / "rds", port=RDS_PORT, max_connections=100, durable=False)
    cluster.init()
    for source, target in zip(rds_cert, (cluster.tls.cert_file, cluster.tls.key_file), strict=True):
        shutil.copyfile(source, target)
    own_for_service(cluster.root)
    try:
        cluster.start()
        cluster.create_app_database(rendered.db_user, MOCK_PASSWORD, rendered.db_name, createrole=True)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def image_for(rendered: RenderedStack, images: BuiltImages) -> Callable[[str], str]:
    local = {POOLER_CONTAINER: images.pooler, MIGRATOR_CONTAINER: images.migrator}

    def image(uri: str) -> str:
        return local[rendered.image_contexts[uri.split("@", 1)[0].rsplit(":", 1)[0]]]

    return image


@pytest.fixture(scope="session")
def hosts(rendered: RenderedStack) -> dict[str, str]:
    """The names the tasks resolve in the VPC, on this machine's loopback."""
    return {rendered.rds_address: "127.0.0.1", rendered.pooler_endpoint: "127.0.0.1"}


@pytest.fixture(scope="session")
def task_role_aws(rendered: RenderedStack) -> Iterator[tuple[dict[str, str], Any]]:
    """The AWS the migration task's role calls: a moto server on the loopback holding the stack's rotation
    parameter; the environment a task gets in place of its role's credentials, and an SSM client of it."""
    port = free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}  # as Fargate sets
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        (container,) = rendered.task("migration")["containerDefinitions"]
        (parameter,) = [v["value"] for v in container["environment"] if v["name"] == ROTATION_PARAMETER_ENV]
        deadline = time.monotonic() + 30
        while True:
            try:
                ssm.put_parameter(Name=parameter, Value=NOT_RECORDED, Type="String", Overwrite=True)
                break
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield env, ssm
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def start_task(
    engine: DockerEngine, rendered: RenderedStack, image_for: Callable[[str], str], hosts: dict[str, str],
    task_role_aws: tuple[dict[str, str], Any],
) -> Iterator[Callable[..., TaskRun]]:
    """Run a task definition of the program (optionally edited, or with other secrets); removed afterwards."""
    runs: list[TaskRun] = []
    counter = iter(range(1, 1000))

    def start(family_prefix: str, definition: dict[str, Any] | None = None,
              secrets: dict[str, str] | None = None) -> TaskRun:
        task = definition or rendered.task(family_prefix)
        plans = plan_task(task, images=image_for, secrets=rendered.secrets if secrets is None else secrets,
                          prefix=f"lg-{family_prefix}-{next(counter)}", hosts=hosts,
                          machine_architecture=machine_architecture(), nofile_ceiling=machine_nofile_ceiling(),
                          task_role=task_role_aws[0])
        run = TaskRun(engine, plans)
        runs.append(run)
        run.start()
        return run

    yield start
    for run in runs:
        run.stop()
        run.remove()


@pytest.fixture(scope="session")
def migrated(rds: PostgresCluster, start_task: Callable[..., TaskRun]) -> TaskRun:
    """The migration task, run once as its task definition says: the schema every other test uses."""
    run = start_task("migration")
    code = run.wait(MIGRATOR_CONTAINER)
    assert code == 0, run.logs(MIGRATOR_CONTAINER)
    return run


@pytest.fixture(scope="module")
def pooler_task(migrated: TaskRun, start_task: Callable[..., TaskRun]) -> Iterator[TaskRun]:
    """The pooler task (PgBouncer and its metrics sidecar), up until the module ends."""
    run = start_task("pooler")
    wait_for_pooler(run)
    yield run
    run.stop()
    run.remove()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The first test of the tier also builds the images (minutes from a cold cache).
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(1800))


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated modules when the mock runtime loads them.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
