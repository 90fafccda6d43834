"""Check 1: is this URL pooled (multiplexed), session-pooled/proxied, or direct?

Reuses the migration job's guard: :func:`migrator.guard.address_check` (the dialled endpoint against
``inet_server_addr()``/``inet_server_port()``) and :func:`migrator.guard.probe_pooling` (backend pids
across two transactions on one connection and across two connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status
from lifeguard.doctor.target import Target
from migrator.guard import AddressCheck, PoolingProbe, address_check, probe_pooling

Kind = Literal["transaction pooling", "session pooling or proxy", "direct"]


@dataclass(frozen=True)
class Pooling:
    addresses: AddressCheck
    probe: PoolingProbe

    @property
    def kind(self) -> Kind:
        if self.probe.multiplexed:
            return "transaction pooling"
        if self.addresses.proxied or self.probe.other_waited:
            return "session pooling or proxy"
        return "direct"

    def details(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dialled": str(self.addresses.dialled),
            "server": str(self.addresses.server),
            "backend_pids": {"first": self.probe.first, "second": self.probe.second, "other": self.probe.other},
            "other_connection_problem": self.probe.other_problem,
        }


def observe(conn: psycopg.Connection[Any]) -> Pooling:
    return Pooling(address_check(conn), probe_pooling(conn))


def finding(target: Target, pooling: Pooling) -> Finding:
    seen = f"{pooling.kind}: {pooling.probe.describe()}"
    if pooling.addresses.proxied:
        seen += f"; dialled {pooling.addresses.dialled}, Postgres answered on {pooling.addresses.server}"
    status, advice = _verdict(target, pooling)
    return Finding("pooling", target.name, status, seen, advice, pooling.details())


def _verdict(target: Target, pooling: Pooling) -> tuple[Status, str]:
    kind = pooling.kind
    if target.role == "pooled":
        if kind == "transaction pooling":
            return Status.OK, NOTHING_TO_CHANGE
        if kind == "session pooling or proxy":
            return Status.WARN, (
                "no multiplexing: each client holds a server connection for its whole session; use the "
                "pooler's transaction mode (PgBouncer pool_mode=transaction, or the provider's pooled URL)"
            )
        return Status.FAIL, (
            f"every function instance would hold a backend of its own: point {POOLED_URL_ENV} at a transaction "
            f"pooler (PgBouncer pool_mode=transaction) and keep this URL as {DIRECT_URL_ENV}"
        )
    if kind == "direct":
        return Status.OK, NOTHING_TO_CHANGE
    return Status.FAIL, (
        f"migrations need one server session and the migration job refuses this URL: set {DIRECT_URL_ENV} "
        "to the database's own endpoint (not the pooler's, not a tunnel)"
    )
