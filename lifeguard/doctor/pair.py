"""Check 6: do the pooled and the direct URL reach the same database, each in its role?

Identity: the cluster's system identifier when the role may read ``pg_control_system()``,
otherwise the postmaster's start time (the same server answers both, or two servers started in
the same microsecond), plus the database's OID and name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status

_IDENTITY = (
    "SELECT current_database(), (SELECT oid::bigint FROM pg_database WHERE datname = current_database()),"
    " pg_postmaster_start_time()::text, pg_is_in_recovery(), current_user,"
    " has_function_privilege('pg_control_system()', 'EXECUTE')"
)


@dataclass(frozen=True)
class Identity:
    database: str
    database_oid: int
    started: str
    system_identifier: int | None
    in_recovery: bool
    user: str

    def same_server(self, other: Identity) -> bool:
        if self.system_identifier is not None and other.system_identifier is not None:
            return self.system_identifier == other.system_identifier and self.started == other.started
        return self.started == other.started

    def same_database(self, other: Identity) -> bool:
        return self.same_server(other) and (self.database_oid, self.database) == (other.database_oid, other.database)

    def describe(self) -> str:
        server = f"system {self.system_identifier}" if self.system_identifier is not None else f"started {self.started}"
        return f"database '{self.database}' (oid {self.database_oid}) on the server {server}"

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database, "database_oid": self.database_oid, "postmaster_started": self.started,
            "system_identifier": self.system_identifier, "in_recovery": self.in_recovery, "user": self.user,
        }


def identify(conn: psycopg.Connection[Any]) -> Identity:
    row = conn.execute(_IDENTITY).fetchone()
    assert row is not None
    database, oid, started, in_recovery, user, may_read_control = row
    system_identifier = None
    if may_read_control:
        control = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        system_identifier = int(control[0]) if control is not None else None
    return Identity(str(database), int(oid), str(started), system_identifier, bool(in_recovery), str(user))


def finding(
    pooled: Identity | None, direct: Identity | None, pooled_kind: str | None, direct_kind: str | None,
    missing: str | None = None, both_given: bool = True,
) -> Finding:
    """``missing``: why one side is absent (not given: a warning; given but not examined: a fail)."""
    if pooled is None or direct is None:
        return Finding(
            "pair", "pair", Status.FAIL if both_given else Status.WARN,
            f"cannot compare the pair: {missing}",
            f"give both: {POOLED_URL_ENV} (or the URL argument) and {DIRECT_URL_ENV} (or --unpooled URL)",
        )
    details = {"pooled": pooled.as_json(), "direct": direct.as_json(),
               "pooled_kind": pooled_kind, "direct_kind": direct_kind}
    if not pooled.same_database(direct):
        return Finding(
            "pair", "pair", Status.FAIL,
            f"different databases: {POOLED_URL_ENV} reaches {pooled.describe()}, {DIRECT_URL_ENV} {direct.describe()}",
            "point both URLs at the same database: migrations on the direct one must change what the functions read",
            details,
        )
    problems: list[str] = []
    if pooled_kind != "transaction pooling":
        problems.append(f"{POOLED_URL_ENV} is {pooled_kind}, not a transaction pooler")
    if direct_kind != "direct":
        problems.append(f"{DIRECT_URL_ENV} is {direct_kind}, not direct")
    if direct.in_recovery:
        problems.append(f"{DIRECT_URL_ENV} reaches a read-only standby")
    same = f"both reach {direct.describe()}"
    if pooled.user != direct.user:
        same += f" (as {pooled.user} and {direct.user})"
    if problems:
        return Finding("pair", "pair", Status.FAIL, f"{same}, but {'; '.join(problems)}",
                       "see the pooling findings above: each URL must be in its role", details)
    return Finding("pair", "pair", Status.OK, f"{same}; the pooled one is pooled and the direct one direct",
                   NOTHING_TO_CHANGE, details)
