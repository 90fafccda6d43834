"""The example events (lambdas/events/): each answers its documented status through the real PgBouncer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from lambdas import charge_credits, read_invoices
from lambdas.db import Database
from lambdas.example_events import EVENTS_DIR, EXPECTED_STATUS, example_event
from tests.lambdas.support import Ledger, body
from tests.support import RunningPooler

HANDLERS = {"read_invoices": read_invoices.handle, "charge_credits": charge_credits.handle}


def test_every_file_is_a_listed_case_and_every_case_has_a_file() -> None:
    on_disk = {(path.parent.name, path.stem) for path in EVENTS_DIR.glob("*/*.json")}
    listed = {(function, case) for function, cases in EXPECTED_STATUS.items() for case in cases}
    assert on_disk == listed
    assert set(EXPECTED_STATUS) == set(HANDLERS)


@pytest.mark.parametrize("function", sorted(EXPECTED_STATUS))
def test_each_case_answers_its_status_in_order(
    function: str, pooler: RunningPooler, make_db: Callable[..., Database], ledger: Ledger
) -> None:
    assert ledger.org_id("acme") == 1  # the files' org: the seeded one, on a fresh database
    instance = make_db(pooler.url())
    answers: dict[str, dict[str, object]] = {}
    for case, status in EXPECTED_STATUS[function].items():
        response = HANDLERS[function](example_event(function, case), instance)
        assert response["statusCode"] == status, (case, body(response))
        answers[case] = body(response)
    if function == "charge_credits":
        assert answers["replay"] == answers["ok"]  # charged once
        assert ledger.credits(1) == 999


def test_values_replace_the_files_own_and_unknown_fields_or_cases_are_refused() -> None:
    assert example_event("charge_credits", "ok", idempotency_key="k-1")["idempotency_key"] == "k-1"
    with pytest.raises(ValueError, match="has no field colour"):
        example_event("read_invoices", "ok", colour="blue")
    with pytest.raises(ValueError, match="no example event read_invoices/replay; choose one of"):
        example_event("read_invoices", "replay")


def test_functions_log_structured_fields_and_never_the_url(
    pooler: RunningPooler, make_db: Callable[..., Database], ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``log_format: JSON`` Lambda writes each record's ``extra`` fields as JSON keys."""
    caplog.set_level(logging.INFO, logger="lambdas")
    charged = charge_credits.handle(example_event("charge_credits", "ok"), make_db(pooler.url()))
    charge_id = body(charged)["charge_id"]
    offline_url = "postgresql://nobody:n0t-this-one@127.0.0.1:9/none?connect_timeout=2"
    assert read_invoices.handle(example_event("read_invoices", "ok"), make_db(offline_url))["statusCode"] == 503
    fields = [{k: v for k, v in vars(r).items() if k in ("function", "outcome", "reason", "org_id", "amount",
                                                          "charge_id")} for r in caplog.records]
    assert {"function": "charge_credits", "outcome": "charged", "org_id": 1, "amount": 1,
            "charge_id": charge_id} in fields
    assert {"outcome": "connect_failed", "reason": "unreachable"} in fields
    assert {"function": "read_invoices", "outcome": "database_unavailable", "reason": "unreachable"} in fields
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert "n0t-this-one" not in text and "postgresql://" not in text
