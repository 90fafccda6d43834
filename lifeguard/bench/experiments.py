"""What the benchmark runs next to what the kit ships, to show what a choice costs.

Plain password in PgBouncer's auth_file. The kit ships the application role's SCRAM verifier
there (:mod:`pgbouncer.scram`): PgBouncer only checks each client's proof and logs in to
Postgres by pass-through. With the plain password instead (what the kit shipped before), PgBouncer
derives the SCRAM keys from it again for every client login (4096 PBKDF2-SHA-256 iterations in
its one thread; releases before 1.25 have no cache). This module swaps the file for the benchmark
and reloads PgBouncer; it is an experiment, not a mode of the local stack.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from lifeguard.local.pooler import PoolerProcess
from lifeguard.local.stack import STATS_USER, LocalStack, StackConfig
from lifeguard.local.system import own_for_service
from pgbouncer.private_file import write_private
from pgbouncer.settings import render_userlist

RELOAD_LOG_LINE = "got SIGHUP, re-reading config"
RELOAD_TIMEOUT_S = 10.0


class ExperimentError(RuntimeError):
    pass


def use_plain_password(stack: LocalStack, config: StackConfig) -> None:
    """Put the application role's plain password into every PgBouncer's auth_file and reload."""
    userlist = render_userlist({config.user: stack.app_password(), STATS_USER: stack.stats_password()})
    for process in stack.poolers(config):
        _reload_with(process, userlist)
    # A login through the pooled URL proves the new file works.
    with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=5) as conn:
        conn.execute("SELECT 1")


def _reload_with(process: PoolerProcess, userlist: str) -> None:
    path = Path(process.settings.auth_file)
    before = process.log_text().count(RELOAD_LOG_LINE)
    write_private(path, userlist)
    own_for_service(path)
    process.send_signal(signal.SIGHUP)
    # RELOAD is asynchronous: wait until this PgBouncer says it re-read its files.
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while process.log_text().count(RELOAD_LOG_LINE) <= before:
        if time.monotonic() > deadline:
            raise ExperimentError(f"PgBouncer in {process.root} did not reload its auth_file")
        time.sleep(0.05)
