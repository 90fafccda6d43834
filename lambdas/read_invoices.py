"""``lambdas.read_invoices.handler``: an organisation and its newest invoices, in one statement.

Event: ``{"org_id": <int>}``. Answers 200 with ``{"org": {...}, "invoices": [...], "has_more": bool}``
(newest first, at most :data:`MAX_INVOICES`), 404 for an unknown organisation, 400 for a bad event,
503 when the database is unavailable.
"""

from __future__ import annotations

from typing import Any

from lambdas import api, db
from lambdas.contract import READ_INVOICES

MAX_INVOICES = 100

# One round trip for the data: the org row joined with its newest invoices (one more than shown,
# to tell the caller whether there are more). An unknown org gives no row at all.
_QUERY = """
SELECT o.id, o.name, o.credits, i.id, i.amount, i.issued_at
FROM orgs o
LEFT JOIN LATERAL (
    SELECT id, amount, issued_at FROM invoices
    WHERE org_id = o.id
    ORDER BY issued_at DESC, id DESC
    LIMIT %(limit)s
) i ON true
WHERE o.id = %(org_id)s
ORDER BY i.issued_at DESC, i.id DESC
"""


def handle(event: object, database: db.Database | None = None) -> api.Response:
    """The handler body, with the instance's :class:`~lambdas.db.Database` passed in (local invoker, tests)."""
    return api.run(READ_INVOICES.name, lambda: _read(event, database or db.default))


def handler(event: object, context: Any) -> api.Response:
    """The Lambda entry point."""
    return handle(event)


def _read(event: object, database: db.Database) -> api.Response:
    fields = api.require_object(event, {"org_id"})
    org_id = api.require_int(fields, "org_id")
    with database.transaction(read_only=True) as conn:
        rows = conn.execute(_QUERY, {"org_id": org_id, "limit": MAX_INVOICES + 1}).fetchall()
    if not rows:
        return api.error(404, "org_not_found", f"no organisation with id {org_id}")
    org_row = rows[0]
    invoices = [
        {"id": r[3], "amount": r[4], "issued_at": api.timestamp(r[5])} for r in rows if r[3] is not None
    ]
    return api.respond(200, {
        "org": {"id": org_row[0], "name": org_row[1], "credits": org_row[2]},
        "invoices": invoices[:MAX_INVOICES],
        "has_more": len(invoices) > MAX_INVOICES,
    })
