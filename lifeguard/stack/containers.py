"""The two images that ship, built from their Dockerfiles on a private engine, and run for the local stack.

Used by the image tests and by ``lifeguard local up --images``, which runs the stack's PgBouncer
and migration job from these images instead of the machine's PgBouncer and Python. Both Dockerfiles fetch the RDS CA
bundle at build time from ``RDS_CA_BUNDLE_URL``; off AWS the bundle is a local PEM (the local
Postgres' CA), served to the build on loopback for the duration of the build only.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from database_urls import DIRECT_URL_ENV
from lifeguard.aws.build_context import STAGE_DIR_NAME, build_context, package_dir, shared_packages
from lifeguard.stack.docker_engine import DockerEngine, Progress, install_missing_packages, no_progress
from lifeguard.stack.ecs_run import TaskRun, machine_architecture, machine_nofile_ceiling, plan_task
from lifeguard.stack.pgbouncer_install import cache_dir
from lifeguard.stack.pooler_ca import server_certificate
from lifeguard.stack.postgres import make_dsn
from lifeguard.stack.safe_paths import read_service_bytes
from lifeguard.stack.stack import LocalStack, MigrationRun, StackConfig, StackError
from lifeguard.stack.system import LocalSetupError, port_in_use, running_as_root, service_uid
from migrator.cabundle import RDS_CA_BUNDLE_PATH
from migrator.contract import APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV
from migrator.contract import CONTAINER_NAME as MIGRATOR_CONTAINER
from pgbouncer.contract import (
    CERT_ENV,
    CREDENTIALS_ENV,
    IMAGE_RUN_DIR,
    IMAGE_SOCKET_DIR,
    KEY_ENV,
    RUN_VOLUME,
    SETTINGS_ENV,
    SOCKET_VOLUME,
    STATS_CREDENTIALS_ENV,
    STATS_USER,
)
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from pgbouncer.tls import ServerCertificate

POOLER_REPOSITORY = "lifeguard-pgbouncer"
MIGRATOR_REPOSITORY = "lifeguard-migrator"
LOCAL_TAG = "local"
CA_BUNDLE_ARG = "RDS_CA_BUNDLE_URL"
DOCKER_DIR_ENV = "LIFEGUARD_DOCKER_DIR"


@dataclass(frozen=True)
class BuiltImages:
    pooler: str
    migrator: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_on_loopback(path: Path, port_file: Path) -> Iterator[str]:
    """Serve ``path`` at ``http://127.0.0.1:PORT/NAME`` while the block runs (the builds fetch it).

    Any local user can fetch from that port, so only a copy of ``path`` is served, from a new folder
    of its own: never ``path``'s folder, where the Postgres certificate sits beside its private key.
    The port is kept in ``port_file`` and reused: the URL is a build argument, and a new value would
    rebuild the layers after it every time.
    """
    with tempfile.TemporaryDirectory(prefix="lifeguard-serve-") as served:
        # The Postgres certificate is in the service user's folder: read without following a link.
        (Path(served) / path.name).write_bytes(read_service_bytes(path, service_uid()))
        with _serve_directory(Path(served), port_file) as base:
            yield f"{base}/{path.name}"


@contextmanager
def _serve_directory(directory: Path, port_file: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        port = 0
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:  # taken since: a new port, once
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(str(server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, name="ca-bundle-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_images(engine: DockerEngine, ca_bundle: Path | None = None,
                 progress: Progress = no_progress, tag: str = LOCAL_TAG) -> BuiltImages:
    """Build the pooler and migrator images (cached layers reused; only what changed is rebuilt).

    ``ca_bundle``: a PEM to build in instead of AWS's RDS bundle (the Dockerfiles' default URL);
    ``tag``: one per CA bundle, so images built with another CA keep theirs.
    """
    engine.ensure_base_image(progress=progress)
    pooler, migrator = f"{POOLER_REPOSITORY}:{tag}", f"{MIGRATOR_REPOSITORY}:{tag}"
    # The migrator's context is staged with the shared packages, exactly as the Pulumi program builds it.
    # From the installed packages (this checkout in a dev install), staged in the kit's cache, not in a checkout.
    stage = cache_dir() / STAGE_DIR_NAME
    contexts = {pooler: build_context(package_dir("pgbouncer"), (), stage_root=stage),
                migrator: build_context(package_dir("migrator"), shared_packages(), stage_root=stage)}
    if ca_bundle is None:
        for tag, context in contexts.items():
            engine.build(context, tag, progress=progress)
    else:
        with serve_on_loopback(ca_bundle, engine.root / "ca-bundle.port") as url:
            for tag, context in contexts.items():
                engine.build(context, tag, {CA_BUNDLE_ARG: url}, progress=progress)
    return BuiltImages(pooler=pooler, migrator=migrator)


# -- `lifeguard local up --images`: the stack's pooler and migration job from the built images ----

_PREFIX = "lifeguard-local"


@dataclass(frozen=True)
class LocalImageTask:
    """What the local stack needs to run a container the way its task definition would."""

    definition: dict[str, Any]
    secrets: dict[str, str]


def pooler_task(image: str, settings_json: str, credentials: str, stats_credentials: str, nofile: int,
                stop_timeout_s: int, certificate: ServerCertificate) -> LocalImageTask:
    """A one-container pooler task definition for the local stack: the fields the real one uses.

    As on AWS, the certificate travels in the environment and its key as a secret.
    """
    secrets = {"local:pooler-credentials": credentials, "local:pooler-stats-credentials": stats_credentials,
               "local:pooler-tls-key": certificate.key_pem}
    container = {
        "name": POOLER_CONTAINER, "image": image, "essential": True,
        "environment": [{"name": SETTINGS_ENV, "value": settings_json},
                        {"name": CERT_ENV, "value": certificate.cert_pem}],
        "secrets": [{"name": CREDENTIALS_ENV, "valueFrom": "local:pooler-credentials"},
                    {"name": STATS_CREDENTIALS_ENV, "valueFrom": "local:pooler-stats-credentials"},
                    {"name": KEY_ENV, "valueFrom": "local:pooler-tls-key"}],
        # As the shipped task: a read-only root, PgBouncer writing only to its two task volumes.
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": RUN_VOLUME, "containerPath": IMAGE_RUN_DIR, "readOnly": False},
                        {"sourceVolume": SOCKET_VOLUME, "containerPath": IMAGE_SOCKET_DIR, "readOnly": False}],
        "ulimits": [{"name": "nofile", "softLimit": nofile, "hardLimit": nofile}],
        "stopTimeout": stop_timeout_s,
    }
    definition = {"family": "local-pooler", "networkMode": "awsvpc",
                  "volumes": [{"name": RUN_VOLUME}, {"name": SOCKET_VOLUME}], "containerDefinitions": [container]}
    return LocalImageTask(definition, secrets)


def migration_task(image: str, direct_url: str, app_role: str, app_verifier: str,
                   command: list[str] | None = None) -> LocalImageTask:
    """As the stack's migration task: the direct URL and the application role's verifier as secrets."""
    container: dict[str, Any] = {
        "name": MIGRATOR_CONTAINER, "image": image, "essential": True,
        "environment": [{"name": APP_ROLE_ENV, "value": app_role}],
        "secrets": [{"name": DIRECT_URL_ENV, "valueFrom": "local:direct-url"},
                    {"name": APP_ROLE_VERIFIER_ENV, "valueFrom": "local:app-verifier"}],
        "readonlyRootFilesystem": True,  # as the shipped task: the migrator writes nothing
    }
    if command:
        container["command"] = command
    return LocalImageTask({"family": "local-migration", "networkMode": "awsvpc", "containerDefinitions": [container]},
                          {"local:direct-url": direct_url, "local:app-verifier": app_verifier})


class LocalImages:
    """The local stack's pooler and migration job as containers on a private engine in ``state_dir``."""

    def __init__(self, state_dir: Path, progress: Progress = no_progress) -> None:
        # LIFEGUARD_DOCKER_DIR shares one engine cache (base image, layers) between state directories.
        self.engine = DockerEngine(Path(os.environ.get(DOCKER_DIR_ENV) or state_dir / "docker"))
        self.progress = progress

    def start(self, ca_bundle: Path) -> BuiltImages:
        self.engine.start(progress=self.progress)
        return build_images(self.engine, ca_bundle, self.progress)

    def _run(self, task: LocalImageTask, name: str) -> TaskRun:
        plans = plan_task(task.definition, images=lambda image: image, secrets=task.secrets,
                          prefix=f"{_PREFIX}-{name}", machine_architecture=machine_architecture(),
                          nofile_ceiling=machine_nofile_ceiling())
        for plan in plans:
            for note in plan.notes:
                self.progress(note)
        run = TaskRun(self.engine, plans)
        run.remove()  # a container left by an earlier `up` (its name is taken otherwise)
        run.start()
        return run

    def start_pooler(self, task: LocalImageTask) -> TaskRun:
        return self._run(task, "pooler")

    def migrate(self, task: LocalImageTask, timeout: float) -> tuple[int, str]:
        run = self._run(task, "migration")
        try:
            code = run.wait(MIGRATOR_CONTAINER, timeout=timeout)
            return code, run.logs(MIGRATOR_CONTAINER)
        finally:
            run.remove()

    def stop(self) -> None:
        """Stop the pooler container (its stop signal: in-flight transactions finish), then the engine."""
        if not self.engine.running():
            return
        self.progress("stopping the pooler container and the Docker engine")
        names = self.engine.docker("ps", "--all", "--quiet", "--filter", f"name={_PREFIX}-", check=False).stdout.split()
        for container in names:
            self.engine.docker("stop", container, check=False)
            self.engine.docker("rm", "--force", "--volumes", container, check=False)
        self.engine.stop()


def check_prerequisites(progress: Progress = no_progress) -> None:
    """Before anything starts: root (the engine needs it), and docker.io and debootstrap installed."""
    if not running_as_root():
        raise LocalSetupError("`lifeguard local up --images` starts a Docker engine, which needs root: "
                              "run it as root (sudo), or without --images")
    install_missing_packages(progress)


def start_stack_pooler(stack: LocalStack, config: StackConfig, progress: Progress) -> None:
    """The stack's PgBouncer as the pooler image's container, on the stack's pooler port."""
    from pgbouncer.settings import PoolerSettings, Upstream

    images = LocalImages(stack.state_dir, progress)
    built = images.start(ca_bundle=stack.cluster(config).ca_file)
    # The image's defaults (paths, TLS, the pinned release), with this machine's ports. The upstream
    # is an IP: inside a container `localhost` resolves to ::1 first, where Postgres does not listen;
    # its certificate names 127.0.0.1 too, so verify-full still checks it.
    settings = PoolerSettings(
        upstream=Upstream(host="127.0.0.1", port=config.pg_port, dbname=config.dbname),
        default_pool_size=config.pool_size, max_client_conn=config.max_client_conn,
        listen_addr="127.0.0.1", listen_port=config.pooler_port, unix_socket_dir=IMAGE_SOCKET_DIR,
        stats_users=(STATS_USER,),
    )
    # As shipped: the application role's SCRAM verifier, not its password.
    # The image's secret holds one user: the login role DATABASE_URL uses now (`rotate` runs on the process stack).
    active = stack.active_login(config)
    credentials = json.dumps({"username": active.name, "password": stack.login_verifier(config, active)})
    stats = json.dumps({"username": STATS_USER, "password": stack.stats_password()})
    task = pooler_task(built.pooler, settings.to_json(), credentials, stats,
                       nofile=settings.required_open_files() + 1024, stop_timeout_s=30,
                       certificate=server_certificate(stack.state_dir))
    progress(f"starting PgBouncer {settings.version} from {built.pooler} on 127.0.0.1:{config.pooler_port}")
    run = images.start_pooler(task)
    deadline = time.monotonic() + 30
    while not port_in_use(config.pooler_port):
        if run.state(POOLER_CONTAINER).get("Status") == "exited" or time.monotonic() > deadline:
            raise StackError(f"the pooler container did not start:\n{run.logs(POOLER_CONTAINER)[-2000:]}")
        time.sleep(0.2)


def migrate_stack(stack: LocalStack, config: StackConfig, timeout: float) -> MigrationRun:
    """The migration job as the migrator image's container, given only the direct URL."""
    images = LocalImages(stack.state_dir)
    direct = make_dsn("127.0.0.1", config.pg_port, config.owner, stack.owner_password(), config.dbname,
                      sslmode="verify-full", sslrootcert=str(RDS_CA_BUNDLE_PATH))
    # LIFEGUARD_APP_ROLE is the first login role: its own verifier (never the active one's, after a rotation).
    verifier = stack.login_verifier(config, stack.logins(config)[0])
    task = migration_task(f"{MIGRATOR_REPOSITORY}:{LOCAL_TAG}", direct, config.user, verifier)
    code, output = images.migrate(task, timeout)
    return stack.migration_run(code, output, direct, verifier)


def stop_stack_containers(state_dir: Path, progress: Progress) -> None:
    images = LocalImages(state_dir, progress)
    if images.engine.root.exists():
        images.stop()
