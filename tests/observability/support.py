"""What the observability tests share: the stats user, a PgBouncer with it, waiting for a Unix socket."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from lifeguard.stack.pooler import PoolerProcess
from lifeguard.stack.postgres import make_dsn
from pgbouncer.contract import CREDENTIALS_ENV, STATS_CREDENTIALS_ENV, STATS_USER
from pgbouncer.entrypoint import credentials_from_env
from pgbouncer.metrics import ConsoleTarget
from tests.support import AppDatabase

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
