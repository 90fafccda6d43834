"""PgBouncer's CPU per login and per warm query inside the shipped pooler image, as its task runs it.

``lifeguard bench --only capacity --images`` adds this to the capacity run. A stack of its own runs
PgBouncer as the pooler image's container, the way its task definition says
(:func:`lifeguard.stack.containers.start_stack_pooler`: the image's default settings with this
machine's ports, the application role's verifier, the stack's certificate, a read-only root, the
``nofile`` ulimit), and the migration job from the migrator image. PgBouncer is the container's
PID 1 (the entrypoint execs it); ``docker inspect`` gives its host pid, whose CPU is read from
``/proc`` as for the local figures, under the same login and warm-query load
(:func:`lifeguard.bench.capacity.measure_logins`, :func:`~lifeguard.bench.capacity.measure_warm`).

The floors are measured in the same run, and in the same place: the bare TLS 1.3 handshake by the
image's own ``openssl s_server`` (the OpenSSL PgBouncer links there), in a container of the same
image, and Postgres' own CPU per ``SELECT 1`` over the warm phase. Needs root (the Docker engine).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from lambdas.contract import PREPARED_ENV
from lambdas.db import ClientSettings
from lifeguard.bench import tls_floor
from lifeguard.bench.capacity import (
    CapacitySettings,
    Measured,
    PoolerVariant,
    fill_pool,
    measure_logins,
    measure_warm,
)
from lifeguard.bench.cpu import ServerCpu
from lifeguard.bench.machine import load_average
from lifeguard.stack.containers import LocalImages
from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.pooler import wait_for_port
from lifeguard.stack.postgres import make_dsn
from lifeguard.stack.procs import command_name
from lifeguard.stack.stack import LocalStack, StackConfig, StackOptions
from lifeguard.stack.system import free_port
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from pgbouncer.tls import write_self_signed

IMAGE = "image"
IMAGE_VARIANT = PoolerVariant(IMAGE, "the pooler image, as its task runs it (task settings, verifier, P-256)",
                              "shipped")
# lifeguard.stack.containers names the local pooler task's containers lifeguard-local-pooler-NAME.
_POOLER_CONTAINER_NAME = f"lifeguard-local-pooler-{POOLER_CONTAINER}"


class ImageBenchError(RuntimeError):
    pass


def _host_pid(engine: DockerEngine, container: str) -> int:
    pid = int(engine.docker("inspect", "--format", "{{.State.Pid}}", container).stdout.strip() or 0)
    if pid <= 0:
        raise ImageBenchError(f"container {container} is not running")
    return pid


def _pooler_image(engine: DockerEngine) -> str:
    return engine.docker("inspect", "--format", "{{.Config.Image}}", _POOLER_CONTAINER_NAME).stdout.strip()


def image_server(engine: DockerEngine, image: str, tls_dir: Path) -> tls_floor.ServerRunner:
    """``openssl s_server`` from the pooler image, in a container on the host network."""
    @contextmanager
    def run(port: int, tickets: int) -> Iterator[int]:
        name = f"lifeguard-bench-tls-{port}"
        engine.docker("run", "--detach", "--name", name, "--network", "host", "--volume", f"{tls_dir}:/tls:ro",
                      "--entrypoint", "openssl", image,
                      *tls_floor.s_server_args(port, "/tls/server.crt", "/tls/server.key", tickets))
        try:
            if not wait_for_port("127.0.0.1", port, 20):
                raise ImageBenchError(f"openssl s_server in {image} did not start")
            yield _host_pid(engine, name)
        finally:
            engine.docker("rm", "--force", name, check=False)
    return run


def measure(root: Path, max_connections: int, capacity: CapacitySettings, say: Callable[[str], None]
            ) -> dict[str, Any]:
    """The image's rounds, its TLS floor and Postgres' floor; stops and removes its stack after."""
    stack = LocalStack(root / "image-stack")
    say("[capacity:image] starting Postgres and the pooler image's container (the images are built or reused)")
    pg_port, pooler_port = free_port(), free_port()
    started = time.time()
    config: StackConfig | None = None
    try:
        config = stack.up(StackOptions(pg_port=pg_port, pooler_port=pooler_port, max_connections=max_connections,
                                       pooler_processes=1, durable=False), migrate=True, images=True,
                          progress=lambda line: say(f"[capacity:image] {line}"))
        return _measure(stack, config, root, capacity, say, started)
    finally:
        stack.down(purge=True)


def _measure(stack: LocalStack, config: StackConfig, root: Path, capacity: CapacitySettings,
             say: Callable[[str], None], started: float) -> dict[str, Any]:
    engine = LocalImages(stack.state_dir).engine
    pid = _host_pid(engine, _POOLER_CONTAINER_NAME)
    if command_name(pid) != "pgbouncer":
        raise ImageBenchError(f"PID 1 of {_POOLER_CONTAINER_NAME} is {command_name(pid)!r}, not pgbouncer")
    image = _pooler_image(engine)
    release = engine.docker("exec", _POOLER_CONTAINER_NAME, "pgbouncer", "--version").stdout.splitlines()[0]
    with psycopg.connect(stack.direct_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT id FROM orgs WHERE name = 'acme'").fetchone()
    if row is None:
        raise ImageBenchError("the migrations did not seed the 'acme' organisation")
    login = stack.active_login(config)
    url = make_dsn("127.0.0.1", config.pooler_port, login.name, stack.login_password(login), config.dbname,
                   sslmode="require")
    client_env = {PREPARED_ENV: "1"}  # the image's PgBouncer 1.26.1 tracks prepared statements
    running = Measured(IMAGE_VARIANT, url, client_env, ClientSettings.from_env(client_env).prepare_threshold,
                       host_pid=pid)
    fill_pool(url, capacity.pool_size)
    postgres = ServerCpu.from_state(stack.cluster(config).postmaster_pid(), [])
    load_start = load_average()
    rounds = []
    for n in range(capacity.rounds):
        logins = measure_logins(running, int(row[0]), capacity)
        warm = measure_warm(running, capacity, postgres)
        rounds.append({"round": n + 1, **logins, **warm})
        say(f"[capacity:image] round {n + 1}/{capacity.rounds}: {logins['ms_per_login']} ms per login"
            f" ({logins['logins']} logins, {logins['failed']} failed), {warm['us_per_query']} us per warm query,"
            f" Postgres {warm['postgres_us_per_query']} us per query")
    tls_dir = root / "image-tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_self_signed(tls_dir, ("localhost",))  # P-256, as the stack's pooler certificate
        # A throwaway key the image's uid (10001) must read through the mount.
        os.chmod(tls_dir, 0o755)  # noqa: S103 - a throwaway self-signed pair, deleted below
        os.chmod(tls_dir / "server.key", 0o644)
        version = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "openssl", image,
                                "version").stdout.strip()
        say(f"[capacity:image] the image's own TLS 1.3 handshake ({version})")
        floor = tls_floor.measure(tls_dir / "server.crt", tls_dir / "server.key", capacity.rounds,
                                  server=image_server(engine, image, tls_dir), version=version)
    finally:
        shutil.rmtree(tls_dir, ignore_errors=True)
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "image": image,
        "pgbouncer": release.split()[-1],
        "load_average_at_start": load_start,
        "load_average_at_end": load_average(),
        "tls_handshake": floor,
        "variants": {IMAGE: {"label": IMAGE_VARIANT.label, "group": IMAGE_VARIANT.group, "rounds": rounds}},
    }
