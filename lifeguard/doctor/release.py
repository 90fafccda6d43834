"""Check 7: does the pooler run a PgBouncer release with a known vulnerability?

The release comes from the ``pgbouncer.version`` parameter PgBouncer 1.26+ reports at login, else
from the admin console's ``SHOW VERSION`` (same address, user and password, database ``pgbouncer``),
which answers only users in ``admin_users`` or ``stats_users``. Where neither answers (another pooler,
a user without console rights, a direct URL) there is nothing to say, and doctor says nothing; a
release outside every range of :mod:`pgbouncer.advisories` is no news either. Only an affected
release gives a finding: a warning naming each CVE and the release that fixes them all.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from lifeguard.doctor.findings import Finding, Status
from lifeguard.doctor.target import CONNECT_TIMEOUT_S, Target
from pgbouncer.advisories import affecting, fixed_in

CHECK = "pooler release"
CONSOLE_DATABASE = "pgbouncer"
_RELEASE = re.compile(r"(\d+\.\d+\.\d+)")


def observe(target: Target, conn: psycopg.Connection[Any]) -> str | None:
    """The pooler's PgBouncer release (``1.18.0``), or None when neither source answers."""
    reported = conn.info.parameter_status("pgbouncer.version")
    if reported:
        return _release(reported)
    params: dict[str, Any] = {**conninfo_to_dict(target.url), "dbname": CONSOLE_DATABASE}
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        with psycopg.connect(**params, autocommit=True) as console, psycopg.ClientCursor(console) as cur:
            # The console speaks only the simple query protocol: hence the client-side cursor.
            cur.execute("SHOW VERSION")
            row = cur.fetchone()
    except psycopg.Error:
        return None  # not a PgBouncer console, or not one this user may read
    return _release(str(row[0])) if row else None


def _release(text: str) -> str | None:
    match = _RELEASE.search(text)
    return match.group(1) if match else None


def finding(target: Target, release: str) -> Finding | None:
    """A warning when ``release`` is in an advisory's range; None otherwise (doctor stays quiet)."""
    advisories = affecting(release)
    if not advisories:
        return None
    fixed = fixed_in(advisories)
    listed = ", ".join(f"{a.cve} (fixed in {a.fixed})" for a in advisories)
    return Finding(
        CHECK, target.name, Status.WARN,
        f"PgBouncer {release} is in the affected range of {listed}",
        f"upgrade PgBouncer to {fixed} or later (a distribution's build may carry backported fixes: "
        "check its changelog)",
        {"release": release, "fixed_in": fixed,
         "advisories": [{"cve": a.cve, "fixed": a.fixed, "summary": a.summary, "only_when": a.only_when,
                         "source": a.source} for a in advisories]},
    )
