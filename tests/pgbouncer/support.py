"""What the PgBouncer tests share besides fixtures: the fixtures' callable types and a pooled connection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from lifeguard.stack.pooler import PoolerProcess
from lifeguard.stack.postgres import make_dsn

MakeRoles = Callable[[Mapping[str, str]], dict[str, str]]
"""The ``make_roles`` fixture: create login roles (``label -> password``), get ``role name -> password``."""
StartMultiUser = Callable[..., PoolerProcess]
"""The ``multi_user_pooler`` fixture: start a PgBouncer whose userlist holds the given credentials."""


def pooled_connect(
    process: PoolerProcess, user: str, password: str, dbname: str, **params: Any
) -> psycopg.Connection[Any]:
    """Connect through ``process`` the way a function does (TLS required, no server-side prepares)."""
    url = make_dsn("127.0.0.1", process.settings.listen_port, user, password, dbname,
                   **{"sslmode": "require", "connect_timeout": 10, **params})
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)
