"""Many function instances charging one balance at once, through a small transaction-mode pool.

Every instance is its own :class:`Database` (its own client connection to PgBouncer), as every
Lambda instance is; PgBouncer multiplexes them onto a few server connections.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lambdas import charge_credits
from lambdas.api import Response
from lambdas.db import Database
from tests.lambdas.support import POOL_SIZE, Ledger, body
from tests.support import AppDatabase, RunningPooler

MakeDb = Callable[..., Database]
INSTANCES = 40
CHARGES_PER_INSTANCE = 5
INITIAL = 5000


def _all_at_once(instances: list[Database], events: list[list[dict[str, Any]]]) -> list[list[Response]]:
    """Instance ``i`` sends ``events[i]`` one after the other; all instances start together."""
    barrier = threading.Barrier(len(instances))
    results: list[list[Response]] = [[] for _ in instances]
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            for event in events[i]:
                results[i].append(charge_credits.handle(event, instances[i]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(instances))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    return results


def test_concurrent_charges_never_overdraw_lose_or_double(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    org = ledger.new_org("contended", INITIAL)
    rng = random.Random(20240611)
    events: list[list[dict[str, Any]]] = [
        [{"org_id": org, "amount": rng.randint(1, 60), "idempotency_key": f"i{i}-c{c}"}
         for c in range(CHARGES_PER_INSTANCE)]
        for i in range(INSTANCES)
    ]
    requested = sum(e["amount"] for batch in events for e in batch)
    assert requested > INITIAL, "the test must ask for more than the balance holds"
    instances = [make_db(pooler.url()) for _ in range(INSTANCES)]

    started = time.monotonic()
    results = _all_at_once(instances, events)
    elapsed = time.monotonic() - started

    answered = [(e, r) for batch_e, batch_r in zip(events, results, strict=True)
                for e, r in zip(batch_e, batch_r, strict=True)]
    assert len(answered) == INSTANCES * CHARGES_PER_INSTANCE
    statuses = {r["statusCode"] for _, r in answered}
    assert statuses <= {200, 402}, statuses
    ok = [(e, body(r)) for e, r in answered if r["statusCode"] == 200]
    refused = [(e, body(r)) for e, r in answered if r["statusCode"] == 402]
    final = ledger.credits(org)
    rows = ledger.charges(org)

    # Nothing lost, nothing doubled, never below zero.
    assert final == INITIAL - sum(e["amount"] for e, _ in ok) >= 0
    assert len(rows) == len(ok)
    assert {r["idempotency_key"] for r in rows} == {e["idempotency_key"] for e, _ in ok}
    # The committed charges form one serial chain: each balance_after is the previous minus its amount.
    chain = sorted(rows, key=lambda r: -r["balance_after"])
    balance = INITIAL
    for row in chain:
        balance -= row["amount"]
        assert row["balance_after"] == balance
    assert balance == final
    # Every 402 was right: it saw a balance that really existed (a point on the chain), below its amount.
    balances = {INITIAL} | {r["balance_after"] for r in rows}
    for event, refusal in refused:
        assert refusal["credits"] in balances and refusal["credits"] < event["amount"]
    # Each answer matches its row.
    by_key = {r["idempotency_key"]: r for r in rows}
    for event, payload in ok:
        row = by_key[event["idempotency_key"]]
        assert (payload["charge_id"], payload["balance_after"]) == (row["id"], row["balance_after"])
    assert all(d.stats.connects == 1 for d in instances)
    with capsys.disabled():
        print(f"\n  {INSTANCES} instances x {CHARGES_PER_INSTANCE} charges on one balance, pool of {POOL_SIZE}: "
              f"{len(ok)} charged, {len(refused)} refused (402), final balance {final}, {elapsed:.2f} s")


def test_concurrent_replays_of_one_key_charge_once(pooler: RunningPooler, make_db: MakeDb, ledger: Ledger) -> None:
    org = ledger.new_org("replayed", INITIAL)
    # Half the instances send the key with a different amount: whichever amount wins, the others
    # with that amount get the same answer, and the rest are told the key is taken.
    events: list[list[dict[str, Any]]] = [
        [{"org_id": org, "amount": 10 if i % 2 else 11, "idempotency_key": "same-key"}] for i in range(INSTANCES)
    ]
    instances = [make_db(pooler.url()) for _ in range(INSTANCES)]
    results = [batch[0] for batch in _all_at_once(instances, events)]

    [row] = ledger.charges(org)
    assert ledger.credits(org) == INITIAL - row["amount"]
    winners = [r for e, r in zip(events, results, strict=True) if e[0]["amount"] == row["amount"]]
    losers = [r for e, r in zip(events, results, strict=True) if e[0]["amount"] != row["amount"]]
    assert {r["statusCode"] for r in winners} == {200}
    assert len({r["body"] for r in winners}) == 1  # identical answers
    assert body(winners[0])["charge_id"] == row["id"]
    assert {r["statusCode"] for r in losers} == {409}


def test_a_key_in_flight_for_another_org_neither_waits_nor_conflicts(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger
) -> None:
    """#31.6: keys are per org, so another org's uncommitted charge with the same key is not this org's business."""
    acme, globex = ledger.org_id("acme"), ledger.org_id("globex")
    with ledger.connect() as other:
        other.execute("BEGIN")
        other.execute(
            "INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (%s, 5, 'shared', 45)",
            (globex,),
        )
        # In this thread, while globex's insert is still open: a wait on it would hang the test.
        response = charge_credits.handle({"org_id": acme, "amount": 5, "idempotency_key": "shared"},
                                         make_db(pooler.url()))
        other.execute("COMMIT")
    assert response["statusCode"] == 200
    assert ledger.credits(acme) == 995 and len(ledger.charges(acme)) == 1 and len(ledger.charges(globex)) == 1


@pytest.mark.parametrize("other_outcome", ["commit", "rollback"])
def test_same_key_in_flight_in_one_org_is_waited_for(
    other_outcome: str, pooler: RunningPooler, schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger
) -> None:
    """Another writer's charge with this org's key is in flight: the function waits for it (that insert's
    foreign key holds a key-share lock on the org row, which the function's FOR UPDATE waits for), then
    answers from what committed."""
    acme = ledger.org_id("acme")
    instance = make_db(pooler.url())
    result: dict[str, Any] = {}
    with ledger.connect() as other:
        other.execute("BEGIN")
        other.execute(
            "INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (%s, 6, 'shared', 994)",
            (acme,),
        )
        worker = threading.Thread(target=lambda: result.update(charge_credits.handle(
            {"org_id": acme, "amount": 5, "idempotency_key": "shared"}, instance)))
        worker.start()
        _wait_for_lock_wait(schema_db)  # the handler waits on the uncommitted charge
        other.execute(other_outcome.upper())
        worker.join(10)
    if other_outcome == "commit":
        assert result["statusCode"] == 409  # the key holds a charge of 6, not 5
        assert ledger.credits(acme) == 1000 and [c["amount"] for c in ledger.charges(acme)] == [6]
    else:
        assert result["statusCode"] == 200
        assert ledger.credits(acme) == 995 and len(ledger.charges(acme)) == 1


def _wait_for_lock_wait(db: AppDatabase) -> None:
    with db.cluster.connect_superuser() as su:
        for _ in range(200):
            if su.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (db.dbname,)
            ).fetchone():
                return
            time.sleep(0.05)
    raise AssertionError("the charge never waited on the concurrent insert")
