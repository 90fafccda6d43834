"""Run the six checks on one URL or a pooled/direct pair and collect the findings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from lifeguard.doctor import headroom, pair, pooling, prepared, release, session_state, tls
from lifeguard.doctor.findings import Finding, Report, Status
from lifeguard.doctor.pooling import Pooling
from lifeguard.doctor.target import Target, TargetError
from migrator.guard import ProbeError

T = TypeVar("T")



STATEMENT_MODE = "statement pooling mode"
"""In PgBouncer's refusal of a transaction block (it then closes the client connection)."""


@dataclass
class _Examined:
    target: Target
    conn: psycopg.Connection[Any] | None = None
    findings: list[Finding] = field(default_factory=list)
    pooling: Pooling | None = None
    identity: pair.Identity | None = None
    headroom: headroom.Headroom | None = None

    def open(self) -> bool:
        try:
            self.conn = self.target.connect()
        except TargetError as exc:
            self.conn = None
            self.findings.append(Finding("connect", self.target.name, Status.FAIL, str(exc),
                                         "fix the URL or the network path, then run doctor again"))
        return self.conn is not None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def attempt(self, check: str, step: Callable[[psycopg.Connection[Any]], T], report: bool = True) -> T | None:
        """Run one probe; a failure becomes a finding (unless ``report`` is False) and the connection
        is made usable again (rolled back, or reopened when the server or pooler closed it)."""
        if self.conn is None or (self.conn.closed and not self.open()):
            return None
        assert self.conn is not None
        try:
            return step(self.conn)
        except (psycopg.Error, ProbeError) as exc:
            message = self.target.error_line(exc)
            advice = "check the server and the role's rights, then run doctor again"
            if STATEMENT_MODE in message:
                advice = "transactions are refused in statement pooling mode: use pool_mode=transaction"
            if report:
                self.findings.append(Finding(
                    check, self.target.name, Status.FAIL,
                    f"could not run this check: {message}", advice,
                ))
            if self.conn.closed:
                self.open()
            elif self.conn.info.transaction_status != TransactionStatus.IDLE:
                self.conn.rollback()
            return None


def _examine(target: Target, *, full: bool, headroom_here: bool, leak_after_s: float) -> _Examined:
    """Connect and run checks 1, 2 and 3 (``full`` only) and 5 on ``target``; gather what 4
    (``headroom_here`` only) and 6 need."""
    examined = _Examined(target)
    if not examined.open():
        return examined
    try:
        examined.pooling = examined.attempt("pooling", pooling.observe)
        if examined.pooling is not None:
            seen = examined.pooling
            examined.findings.append(pooling.finding(target, seen))
            if full:
                result = examined.attempt("prepared statements", prepared.probe)
                if result is not None:
                    examined.findings.append(prepared.finding(target, seen, result))
                state = examined.attempt("session state", session_state.probe)
                if state is not None:
                    examined.findings.append(session_state.finding(target, seen, state))
        if examined.pooling is not None and examined.pooling.kind != "direct":
            version = examined.attempt(release.CHECK, lambda conn: release.observe(target, conn), report=False)
            release_finding = release.finding(target, version) if version else None
            if release_finding is not None:
                examined.findings.append(release_finding)
        if headroom_here:
            examined.headroom = examined.attempt("headroom", lambda conn: headroom.observe(conn, leak_after_s))
        proxied = examined.pooling is not None and examined.pooling.kind != "direct"
        tls_finding = examined.attempt("tls", lambda conn: tls.finding(target, conn, proxied))
        if tls_finding is not None:
            examined.findings.append(tls_finding)
        # A failure here shows in the pair finding ("could not be examined").
        examined.identity = examined.attempt("pair", pair.identify, report=False)
    finally:
        examined.close()
    return examined


def run_doctor(
    pooled_url: str | None,
    direct_url: str | None = None,
    instances: int | None = None,
    leak_after_s: float = headroom.LEAK_AFTER_S,
) -> Report:
    """Examine ``pooled_url`` (what functions use) and/or ``direct_url`` (what migrations use)."""
    if pooled_url is None and direct_url is None:
        raise ValueError("give at least one URL")
    started = time.monotonic()
    targets = [Target(POOLED_URL_ENV, "pooled", pooled_url)] if pooled_url is not None else []
    if direct_url is not None:
        targets.append(Target(DIRECT_URL_ENV, "direct", direct_url))
    # Prepared statements and session state matter where the functions connect: the first URL.
    # Headroom once, from the direct side when there is one (the server's view, no pooler queue).
    examined = [
        _examine(t, full=(i == 0), headroom_here=(t is targets[-1]), leak_after_s=leak_after_s)
        for i, t in enumerate(targets)
    ]
    by_role = {e.target.role: e for e in examined}
    pooled, direct = by_role.get("pooled"), by_role.get("direct")

    findings = [f for e in examined for f in e.findings]
    source = examined[-1]
    if source.headroom is not None:
        # None when only a direct URL was given: a spike would use it straight.
        pooled_kind = pooled.pooling.kind if pooled is not None and pooled.pooling is not None else None
        findings.append(headroom.finding(source.target, pooled_kind, source.headroom, instances, leak_after_s))
    findings.append(_pair_finding(pooled, direct))
    order = ("connect", "pooling", release.CHECK, "prepared statements", "session state", "headroom", "tls", "pair")
    findings.sort(key=lambda f: (order.index(f.check), f.target != POOLED_URL_ENV))
    urls = {t.name: t.shown for t in targets}
    return Report(urls, tuple(findings), time.monotonic() - started)


def _pair_finding(pooled: _Examined | None, direct: _Examined | None) -> Finding:
    missing = None
    if pooled is None or direct is None:
        missing = f"{POOLED_URL_ENV if pooled is None else DIRECT_URL_ENV} not given"
    else:
        for side in (pooled, direct):
            if side.identity is None:
                missing = f"{side.target.name} could not be examined"

    def kind(side: _Examined | None) -> str | None:
        return side.pooling.kind if side is not None and side.pooling is not None else None

    return pair.finding(
        pooled.identity if pooled else None, direct.identity if direct else None, kind(pooled), kind(direct), missing,
        both_given=pooled is not None and direct is not None,
    )
