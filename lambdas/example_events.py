"""Example events for the sample functions: ``lambdas/events/<function>/<case>.json``, one file per case.

Each file is a payload as a caller sends it (``aws lambda invoke --payload fileb://...`` takes it as is).
The handler tests, ``lifeguard demo``/``bench`` (through the local invoker) and ``lifeguard smoke`` build
their events from these files, so the shape the docs show is the shape that is exercised. ``replay`` is
``ok`` sent again (same idempotency key); ``key_reused`` is that key with another amount, after ``ok``.
Stdlib only: ``lifeguard smoke`` runs where psycopg is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lambdas.contract import CHARGE_CREDITS, READ_INVOICES

EVENTS_DIR = Path(__file__).resolve().parent / "events"

# What each case answers on a freshly migrated database (org 1 is the seeded 'acme', 1000 credits),
# the cases of one function in the order they are meant to be sent.
EXPECTED_STATUS: dict[str, dict[str, int]] = {
    READ_INVOICES.name: {"ok": 200, "bad_event": 400, "unknown_org": 404},
    CHARGE_CREDITS.name: {
        "ok": 200, "replay": 200, "bad_event": 400, "insufficient_credits": 402, "unknown_org": 404,
        "key_reused": 409,
    },
}


def example_event(function: str, case: str, **values: Any) -> dict[str, Any]:
    """The ``case`` event of ``function``, with ``values`` in place of the file's own.

    A value for a field the file does not have is refused: the file says what the event holds.
    """
    known = EXPECTED_STATUS.get(function)
    if known is None or case not in known:
        choices = ", ".join(f"{name}/{c}" for name, cases in EXPECTED_STATUS.items() for c in cases)
        raise ValueError(f"no example event {function}/{case}; choose one of {choices}")
    event: dict[str, Any] = json.loads((EVENTS_DIR / function / f"{case}.json").read_text(encoding="utf-8"))
    unknown = sorted(values.keys() - event.keys())
    if unknown:
        raise ValueError(f"the {function}/{case} event has no field {', '.join(unknown)}")
    return {**event, **values}
