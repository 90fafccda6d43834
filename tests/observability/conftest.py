"""A real PgBouncer (the shipped 1.24.1) with a read-only ``stats_users`` user in its auth_file.

The shared ``start_pooler`` fixture renders the app user only; the console reader needs a second
userlist line, so this fixture starts :class:`PoolerProcess` itself with both credentials, on the
same rendered settings (``local_settings``) and the same session Postgres. The credentials go
through the image entrypoint's own secret handling (``POOLER_CREDENTIALS`` and
``POOLER_STATS_CREDENTIALS``, :func:`pgbouncer.entrypoint.credentials_from_env`), so every test
here logs the stats user in the way the pooler task renders it.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from lifeguard.local.pooler import PoolerProcess
from lifeguard.local.postgres import make_dsn
from pgbouncer.entrypoint import CREDENTIALS_ENV, STATS_CREDENTIALS_ENV, credentials_from_env
from pgbouncer.metrics import ConsoleTarget
from pgbouncer.versions import PgBouncerVersion
from tests.support import AppDatabase, pooler_settings

STATS_USER = "lifeguard_stats"
# Quotes, spaces and URL delimiters: the userlist and the console login must both cope.
STATS_PASSWORD = "st\"ats' p@ss:w%rd#;$&="


@dataclass
class StatsPooler:
    process: PoolerProcess
    db: AppDatabase = field(repr=False)  # holds the app password; keep it out of tracebacks

    @property
    def port(self) -> int:
        return self.process.settings.listen_port

    @property
    def socket_dir(self) -> str:
        return self.process.settings.unix_socket_dir

    def console(self, password: str = STATS_PASSWORD, host: str | None = None) -> ConsoleTarget:
        """The console over the Unix socket (default) or TCP (``host="127.0.0.1"``)."""
        return ConsoleTarget(host=host or self.socket_dir, port=self.port, user=STATS_USER, password=password)

    def console_url(self) -> str:
        # host= in the query: the socket directory is a path, which the authority part cannot hold.
        return f"postgresql://{quote(STATS_USER, safe='')}:{quote(STATS_PASSWORD, safe='')}@/pgbouncer?" + urlencode(
            {"host": self.socket_dir, "port": self.port}
        )

    def url(self) -> str:
        """The pooled app URL, as functions get it."""
        return make_dsn("127.0.0.1", self.port, self.db.user, self.db.password, self.db.dbname, sslmode="require")

    def start(self) -> None:
        # The two secrets as ECS injects them into the pooler container.
        secrets = {
            CREDENTIALS_ENV: json.dumps({"username": self.db.user, "password": self.db.verifier}),
            STATS_CREDENTIALS_ENV: json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
        }
        self.process.start(credentials_from_env(secrets, self.process.settings))
        # PoolerProcess waits for the TCP port; PgBouncer opens its Unix socket just after it.
        wait_for_socket(Path(self.socket_dir), self.port)


def wait_for_socket(socket_dir: Path, port: int, timeout: float = 15) -> None:
    """Wait until PgBouncer accepts connections on its Unix socket ``<dir>/.s.PGSQL.<port>``."""
    path = str(socket_dir / f".s.PGSQL.{port}")
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


@pytest.fixture
def stats_pooler(
    app_db: AppDatabase, state_root: Path, pgbouncer_version: PgBouncerVersion
) -> Iterator[Callable[..., StatsPooler]]:
    """Start PgBouncer with ``stats_users=(STATS_USER,)``; overrides go to the settings."""
    started: list[PoolerProcess] = []
    counter = itertools.count(1)

    def start(default_pool_size: int = 2, **overrides: Any) -> StatsPooler:
        root = state_root / f"obs-{app_db.dbname}-{next(counter)}"
        settings = pooler_settings(
            app_db, root, pgbouncer_version, default_pool_size, stats_users=(STATS_USER,), **overrides
        )
        pooler = StatsPooler(PoolerProcess(root=root, settings=settings), app_db)
        started.append(pooler.process)
        pooler.start()
        return pooler

    yield start
    for process in started:
        process.stop(signal.SIGQUIT, timeout=10)
