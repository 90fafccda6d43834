"""What would lift the figures: experiments the benchmark runs next to what the kit ships.

SCRAM verifier in PgBouncer's auth_file. The kit renders *plain* passwords into ``auth_file``
(:func:`pgbouncer.settings.render_userlist` refuses hashes): PgBouncer can then log in to any
Postgres, but for every client login it derives the SCRAM keys from the password again (4096
PBKDF2-SHA-256 iterations, in PgBouncer's own single thread; releases before 1.25 have no cache).
With the role's SCRAM verifier in ``auth_file`` instead, PgBouncer only checks the client's proof,
and passes the client's keys on to log in to Postgres, which works only when the verifier is
byte-identical to the one Postgres stores. This module swaps the file for the benchmark and
reloads PgBouncer; it is an experiment, not a mode of the local stack.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg

from lifeguard.local.stack import STATS_USER, LocalStack, StackConfig, StackError
from lifeguard.local.system import own_for_service


class ExperimentError(RuntimeError):
    pass


def _quote(text: str) -> str:
    # auth_file quoting: inside double quotes PgBouncer reads "" as one ".
    return '"' + text.replace('"', '""') + '"'


def use_scram_verifier(stack: LocalStack, config: StackConfig) -> None:
    """Put the app role's stored SCRAM verifier into every PgBouncer's auth_file and reload."""
    with psycopg.connect(stack.superuser_url(config), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (config.user,)).fetchone()
    if row is None or not str(row[0]).startswith("SCRAM-SHA-256$"):
        raise ExperimentError(f"role {config.user} has no SCRAM verifier in pg_authid")
    userlist = (
        f"{_quote(config.user)} {_quote(str(row[0]))}\n"
        f"{_quote(STATS_USER)} {_quote(stack.stats_password())}\n"
    )
    for i in range(1, config.pooler_processes + 1):
        root = stack.pooler_root(i)
        path = root / "userlist.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(userlist)
        own_for_service(path)
        pid = stack.pooler_pid(i)
        if pid is None:
            raise StackError(f"PgBouncer in {root} is not running; run `lifeguard local up`")
        os.kill(pid, signal.SIGHUP)
    # RELOAD is asynchronous; a login through the pooled URL proves the new file works.
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise ExperimentError("PgBouncer refused logins after switching to the SCRAM verifier") from None
            time.sleep(0.2)
