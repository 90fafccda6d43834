"""Check 4: how many more connections the server takes, and what holds the ones in use.

``max_connections`` minus the reserved slots minus the client backends in use is what a spike can
still open; the kit's arithmetic is instances x connections per instance (one, in the kit's client).
A role without ``pg_monitor`` (``pg_read_all_stats``) sees other roles' sessions in
``pg_stat_activity`` without their state, so states, leaks and the longest query would only cover
its own sessions: then the finding says so rather than reporting those counts as complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from database_urls import POOLED_URL_ENV
from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status, worst
from lifeguard.doctor.target import Target

LEAK_AFTER_S = 60.0
"""A connection idle in a transaction for longer than this is reported as a leak."""
LOW_FREE_FRACTION = 0.1

# One round trip. To a role that may not read them, other roles' sessions show with a NULL
# backend_type and state but their database: those count as hidden client backends (background
# processes have no database; an autovacuum worker of the moment may be counted too).
_QUERY = """
WITH a AS (
    SELECT pid, state, application_name, usename, state_change, query_start
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL)
)
SELECT json_build_object(
    'max_connections', current_setting('max_connections')::int,
    'superuser_reserved', current_setting('superuser_reserved_connections')::int,
    'reserved', coalesce(current_setting('reserved_connections', true), '0')::int,
    'role', current_user,
    'sees_all', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
    'in_use', (SELECT count(*) FROM a),
    'hidden', (SELECT count(*) FROM a WHERE state IS NULL),
    'by_state', (SELECT coalesce(json_object_agg(s, n), '{}') FROM
                 (SELECT state AS s, count(*) AS n FROM a WHERE state IS NOT NULL GROUP BY state) t),
    'by_application', (SELECT coalesce(json_agg(json_build_object('application_name', app, 'count', n)
                                       ORDER BY n DESC, app), '[]') FROM
                       (SELECT coalesce(nullif(application_name, ''), '(none)') AS app, count(*) AS n
                        FROM a WHERE state IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
    'leaks', (SELECT coalesce(json_agg(json_build_object(
                  'pid', pid, 'application_name', application_name, 'user', usename,
                  'idle_s', round(extract(epoch FROM now() - state_change)::numeric, 1))
                  ORDER BY state_change), '[]') FROM
              (SELECT * FROM a WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
               AND now() - state_change > make_interval(secs => %(leak_after)s)
               ORDER BY state_change LIMIT 5) t),
    'leak_count', (SELECT count(*) FROM a WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
                   AND now() - state_change > make_interval(secs => %(leak_after)s)),
    'longest', (SELECT json_build_object('pid', pid, 'application_name', application_name,
                       'running_s', round(extract(epoch FROM now() - query_start)::numeric, 1))
                FROM a WHERE state = 'active' AND pid <> pg_backend_pid() ORDER BY query_start LIMIT 1)
)
"""


@dataclass(frozen=True)
class Headroom:
    figures: dict[str, Any]

    @property
    def usable(self) -> int:
        f = self.figures
        return int(f["max_connections"]) - int(f["superuser_reserved"]) - int(f["reserved"])

    @property
    def free(self) -> int:
        return self.usable - int(self.figures["in_use"])


def observe(conn: psycopg.Connection[Any], leak_after_s: float = LEAK_AFTER_S) -> Headroom:
    row = conn.execute(_QUERY, {"leak_after": leak_after_s}).fetchone()
    assert row is not None
    return Headroom(dict(row[0]))


def finding(
    target: Target, pooled_kind: str | None, headroom: Headroom, instances: int | None, leak_after_s: float
) -> Finding:
    """``pooled_kind``: what :data:`POOLED_URL_ENV` turned out to be (None when it was not given)."""
    f = headroom.figures
    states = ", ".join(f"{state} {n}" for state, n in sorted(f["by_state"].items()))
    hidden = int(f["hidden"])
    reserved = int(f["superuser_reserved"]) + int(f["reserved"])
    breakdown = ", ".join(([states] if states else []) + ([f"{hidden} hidden"] if hidden else []))
    parts = [
        f"max_connections {f['max_connections']} ({reserved} reserved): {f['in_use']} client backends in use"
        + (f" ({breakdown})" if breakdown else "")
        + f", {headroom.free} free"
    ]
    if f["by_application"]:
        apps = ", ".join(f"{a['application_name']} {a['count']}" for a in f["by_application"][:3])
        parts.append(f"by application_name: {apps}")
    if f["longest"]:
        longest = f["longest"]
        parts.append(f"longest running query {longest['running_s']} s (pid {longest['pid']})")
    verdicts: list[tuple[Status, str]] = []
    if int(f["leak_count"]):
        first = f["leaks"][0]
        parts.append(
            f"{f['leak_count']} idle in transaction over {leak_after_s:g} s (oldest: pid {first['pid']} "
            f"'{first['application_name']}' of {first['user']}, {first['idle_s']} s)"
        )
        verdicts.append((Status.WARN,
            "end the leaking client's transactions (or terminate them) and set "
            "idle_in_transaction_session_timeout, or PgBouncer's idle_transaction_timeout"))
    if not f["sees_all"] and hidden:
        parts.append(f"role {f['role']} cannot see the state of {hidden} other sessions, so leaks may be missed")
        verdicts.append((Status.WARN,
            f"GRANT pg_monitor TO {f['role']} (or run doctor as a role that has it) to see every session"))
    if headroom.free <= max(1, int(headroom.usable * LOW_FREE_FRACTION)):
        verdicts.append((Status.WARN,
            f"only {headroom.free} of {headroom.usable} connections free: lower pool sizes or raise max_connections"))
    if instances is not None:
        spike = f"{instances} instances x 1 connection = {instances} connections"
        if pooled_kind == "transaction pooling":
            parts.append(f"{spike} to the pooler, which multiplexes them onto its pool")
        else:
            parts.append(f"{spike}, each holding a backend, against {headroom.free} free")
            if instances > headroom.free:
                verdicts.append((Status.FAIL,
                    f"{instances - headroom.free} of {instances} instances would get 'too many clients': "
                    f"give the functions a transaction pooler's URL as {POOLED_URL_ENV}"))
    elif pooled_kind != "transaction pooling":
        spiked = POOLED_URL_ENV if pooled_kind else target.name
        parts.append(f"a spike on {spiked} gets {headroom.free} connections before 'too many clients'")
    details = {**f, "usable": headroom.usable, "free": headroom.free, "instances": instances}
    status = worst([s for s, _ in verdicts])
    advice = "; ".join(a for s, a in verdicts if s is status) if verdicts else NOTHING_TO_CHANGE
    return Finding("headroom", target.name, status, "; ".join(parts), advice, details)
