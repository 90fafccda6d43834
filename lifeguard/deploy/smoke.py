"""The post-deploy smoke test: one read, one charge, its replay, and a read to prove it charged once.

It talks to the deployed functions exactly as a caller would, so it exercises the whole path:
function -> pooled URL -> NLB -> PgBouncer -> RDS, on the schema the migration job just applied.
It spends ``amount`` credits of the org per run, and expects no other charges to that org while
it runs: by default the smoke test's own org, which migration ``0004_smoke_org.sql`` creates in
every stack (production has no demo orgs, and a demo org's balance should not drain per deploy).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from lambdas.contract import CHARGE_CREDITS, READ_INVOICES
from lambdas.example_events import example_event
from lifeguard.deploy.aws import AWS_ERRORS, explain_aws_error
from lifeguard.deploy.invoke import InvocationError, Reply, invoke
from lifeguard.deploy.outputs import SmokeTarget

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

SMOKE_AMOUNT = 1
SMOKE_ORG_ID = 2147483647
"""The smoke test's own org (``lifeguard-smoke``), created with this id by ``0004_smoke_org.sql``."""


def new_idempotency_key() -> str:
    # Fresh per run, so the first charge really charges and its replay really replays.
    return f"lifeguard-smoke-{uuid.uuid4()}"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


@dataclass
class SmokeReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)


class _Failed(Exception):
    """A check failed and the checks after it depend on its answer."""


class _Smoke:
    def __init__(self, client: LambdaClient, target: SmokeTarget, org_id: int, amount: int) -> None:
        self.client = client
        self.target = target
        self.org_id = org_id
        self.amount = amount
        self.report = SmokeReport()
        self.last_read: dict[str, Any] = {}

    def passed(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, True, detail))

    def fail(self, name: str, problem: str) -> NoReturn:
        self.report.checks.append(Check(name, False, problem))
        raise _Failed

    def call(self, name: str, function: str, event: dict[str, Any]) -> Reply:
        """Invoke and insist on statusCode 200 with a JSON object body."""
        try:
            reply = invoke(self.client, function, event)
        except InvocationError as exc:
            self.fail(name, str(exc))
        except AWS_ERRORS as exc:
            self.fail(name, f"invoking {function} failed: {explain_aws_error(exc)}")
        if reply.status_code != 200:
            hint = {
                404: f"org {self.org_id} does not exist: have the migrations (0004_smoke_org.sql creates the "
                     f"smoke test's org {SMOKE_ORG_ID}) run?",
                402: f"org {self.org_id} has too few credits for the smoke charge: top it up or pass --org-id",
                503: "the function cannot reach the database through the pooler",
            }.get(reply.status_code)
            self.fail(name, f"expected statusCode 200, got {reply.status_code} ({reply.error_summary()})"
                      + (f"; {hint}" if hint else ""))
        if not isinstance(reply.body, dict):
            self.fail(name, "the body is not a JSON object")
        return reply

    def read_credits(self, name: str) -> int:
        event = example_event(READ_INVOICES.name, "ok", org_id=self.org_id)
        body = self.call(name, self.target.read_function, event).body
        self.last_read = body
        org = body.get("org")
        if not isinstance(org, dict) or org.get("id") != self.org_id:
            self.fail(name, f"the body has no 'org' with id {self.org_id}")
        credits, invoices = org.get("credits"), body.get("invoices")
        if isinstance(credits, bool) or not isinstance(credits, int):
            self.fail(name, "the body has no integer 'org.credits'")
        if not isinstance(invoices, list):
            self.fail(name, "the body has no 'invoices' list")
        self.passed(name, f"200, org {org.get('name')!r} has {credits} credits and {len(invoices)} invoices")
        return credits

    def charge(self, name: str, key: str, before: int) -> dict[str, Any]:
        event = example_event(CHARGE_CREDITS.name, "ok", org_id=self.org_id, amount=self.amount, idempotency_key=key)
        body: dict[str, Any] = self.call(name, self.target.charge_function, event).body
        for field_name, expected in event.items():
            if body.get(field_name) != expected:
                self.fail(name, f"body.{field_name} is {body.get(field_name)!r}, expected {expected!r}")
        if body.get("balance_after") != before - self.amount:
            self.fail(name, f"body.balance_after is {body.get('balance_after')!r}, expected {before - self.amount} "
                            f"({before} - {self.amount}); other charges to org {self.org_id} meanwhile also cause this")
        self.passed(name, f"200, charge {body.get('charge_id')!r}, balance {body['balance_after']}")
        return body

    def replay(self, name: str, key: str, first: dict[str, Any]) -> None:
        event = example_event(CHARGE_CREDITS.name, "replay", org_id=self.org_id, amount=self.amount,
                              idempotency_key=key)
        body: dict[str, Any] = self.call(name, self.target.charge_function, event).body
        if body != first:
            differing = sorted(k for k in first.keys() | body.keys() if first.get(k) != body.get(k))
            self.fail(name, f"the replay answered differently from the first charge (fields: {', '.join(differing)})")
        self.passed(name, "200, the same answer as the first charge")

    def node_read(self, name: str, function: str) -> None:
        """The Node.js read_invoices answers what the Python one just did, through the same pooler."""
        body = self.call(name, function, example_event(READ_INVOICES.name, "ok", org_id=self.org_id)).body
        if body != self.last_read:
            differing = sorted(k for k in body.keys() | self.last_read.keys() if body.get(k) != self.last_read.get(k))
            self.fail(name, f"the Node.js function answered differently from the Python one (fields: "
                            f"{', '.join(differing)})")
        self.passed(name, "200, the same answer as the Python function")

    def run(self, key: str) -> None:
        before = self.read_credits(f"read org {self.org_id}")
        if self.target.node_read_function:
            self.node_read(f"read org {self.org_id} with the Node.js function", self.target.node_read_function)
        first = self.charge(f"charge {self.amount} credit(s) with a new idempotency key", key, before)
        self.replay("replay the same idempotency key", key, first)
        name = "balance after the charge and its replay"
        after = self.read_credits(f"read org {self.org_id} again")
        expected = before - self.amount
        if after != expected:
            cause = ("the replay charged again" if after == before - 2 * self.amount
                     else "other charges to the org meanwhile also cause this")
            self.fail(name, f"org {self.org_id} has {after} credits, expected {expected} "
                            f"({before} - {self.amount}, once); {cause}")
        self.passed(name, f"{after} = {before} - {self.amount}: charged exactly once")


def run_smoke(
    client: LambdaClient,
    target: SmokeTarget,
    *,
    org_id: int = SMOKE_ORG_ID,
    amount: int = SMOKE_AMOUNT,
    new_key: Callable[[], str] = new_idempotency_key,
) -> SmokeReport:
    """Run the checks in order, stopping at the first failure (later checks need earlier answers)."""
    smoke = _Smoke(client, target, org_id, amount)
    with contextlib.suppress(_Failed):
        smoke.run(new_key())
    return smoke.report
