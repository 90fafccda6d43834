"""``lambdas.charge_credits.handler``: deduct credits from an organisation, all or nothing.

Event: ``{"org_id": <int>, "amount": <positive int>, "idempotency_key": "<string>"}``.

One interactive transaction: lock the org's row (``SELECT ... FOR UPDATE``), look the key up,
check the balance, insert the charge with the balance left after it, deduct, commit. Answers:

* 200 ``{"charge_id", "org_id", "amount", "balance_after", "idempotency_key", "created_at"}``;
  a repeated key answers the very same body and charges nothing more;
* 400 bad event, 404 unknown organisation, 402 not enough credits (nothing is written);
* 409 the key was already used by this organisation for a different amount (a key belongs to the
  organisation that used it: another organisation's key is a new key here, and a 409 names nothing
  of another organisation);
* 503 the database is unavailable, or the connection was lost while committing (retry with the
  same key: it charges at most once).

Only successful charges are recorded, so a key that got a 402 may be retried once credits arrive.
"""

from __future__ import annotations

import logging
from typing import Any

from lambdas import api, db
from lambdas.contract import CHARGE_CREDITS

logger = logging.getLogger(__name__)

_LOCK_ORG = "SELECT credits FROM orgs WHERE id = %s FOR UPDATE"
# Keys are unique per org (migration 0005): only the caller's own org's charges are looked at.
_FIND_CHARGE = (
    "SELECT id, org_id, amount, balance_after, created_at FROM charges WHERE org_id = %s AND idempotency_key = %s"
)
# Calls for one org are serialised by the org row's lock, so a same-key insert cannot race; ON
# CONFLICT DO NOTHING stays as the backstop: the loser would answer with the winner's charge.
_INSERT_CHARGE = """
INSERT INTO charges (org_id, amount, idempotency_key, balance_after)
VALUES (%s, %s, %s, %s)
ON CONFLICT (org_id, idempotency_key) DO NOTHING
RETURNING id, created_at
"""
_DEDUCT = "UPDATE orgs SET credits = credits - %s WHERE id = %s RETURNING credits"


def handle(event: object, database: db.Database | None = None) -> api.Response:
    """The handler body, with the instance's :class:`~lambdas.db.Database` passed in (local invoker, tests)."""
    return api.run(CHARGE_CREDITS.name, lambda: _charge(event, database or db.default))


def handler(event: object, context: Any) -> api.Response:
    """The Lambda entry point."""
    return handle(event)


def _charge(event: object, database: db.Database) -> api.Response:
    fields = api.require_object(event, {"org_id", "amount", "idempotency_key"})
    org_id = api.require_int(fields, "org_id")
    amount = api.require_int(fields, "amount")
    key = api.require_key(fields, "idempotency_key")

    with database.transaction() as conn:
        locked = conn.execute(_LOCK_ORG, (org_id,)).fetchone()
        if locked is None:
            return api.error(404, "org_not_found", f"no organisation with id {org_id}")
        # After the lock: a concurrent call with this key for this org has committed by now.
        stored = conn.execute(_FIND_CHARGE, (org_id, key)).fetchone()
        if stored is not None:
            return _replay(stored, amount, key)
        credits = int(locked[0])
        if credits < amount:
            return api.error(
                402, "insufficient_credits",
                f"organisation {org_id} has {credits} credits, {amount} requested",
                credits=credits, amount=amount,
            )
        inserted = conn.execute(_INSERT_CHARGE, (org_id, amount, key, credits - amount)).fetchone()
        if inserted is None:
            stored = conn.execute(_FIND_CHARGE, (org_id, key)).fetchone()
            assert stored is not None, "ON CONFLICT skipped the insert, so the conflicting row is committed"
            return _replay(stored, amount, key)
        deducted = conn.execute(_DEDUCT, (amount, org_id)).fetchone()
        assert deducted is not None and deducted[0] == credits - amount, "the org row is locked"
    logger.info("charged org %s amount %s, charge %s", org_id, amount, inserted[0], extra={
        "function": CHARGE_CREDITS.name, "outcome": "charged", "org_id": org_id, "amount": amount,
        "charge_id": inserted[0]})
    return _charged(inserted[0], org_id, amount, credits - amount, key, inserted[1])


def _charged(charge_id: int, org_id: int, amount: int, balance_after: int, key: str, created_at: Any) -> api.Response:
    return api.respond(200, {
        "charge_id": charge_id,
        "org_id": org_id,
        "amount": amount,
        "balance_after": balance_after,
        "idempotency_key": key,
        "created_at": api.timestamp(created_at),
    })


def _replay(stored: tuple[Any, ...], amount: int, key: str) -> api.Response:
    """Answer a key this org already used: ``stored`` is that org's own charge, never another org's."""
    charge_id, stored_org, stored_amount, balance_after, created_at = stored
    if stored_amount != amount:
        return api.error(
            409, "idempotency_key_reused",
            f"idempotency_key {key!r} was already used by organisation {stored_org} for a charge of "
            f"{stored_amount}; use a new key for a different charge",
        )
    logger.info("replayed charge %s for idempotency key", charge_id,
                extra={"function": CHARGE_CREDITS.name, "outcome": "replayed", "charge_id": charge_id})
    return _charged(charge_id, stored_org, stored_amount, balance_after, key, created_at)
