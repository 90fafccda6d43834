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
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifeguard.stack.pooler import PoolerProcess
from pgbouncer.contract import STATS_USER
from pgbouncer.versions import PgBouncerVersion
from tests.observability.support import StatsPooler
from tests.support import AppDatabase, pooler_settings


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
