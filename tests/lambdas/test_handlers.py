"""Both handlers through the real PgBouncer (transaction mode), every status code they answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.sql
import pytest

from lambdas import charge_credits, db, read_invoices
from lambdas.api import MAX_IDEMPOTENCY_KEY_LENGTH
from lambdas.api import MISCONFIGURED_MESSAGE as MISCONFIGURED
from lambdas.db import Database
from lifeguard.stack.system import free_port
from tests.lambdas.support import REGION, CountingSecrets, Ledger, body
from tests.support import AppDatabase, RunningPooler

MakeDb = Callable[..., Database]


@pytest.fixture
def instance(pooler: RunningPooler, make_db: MakeDb) -> Database:
    return make_db(pooler.url())


@pytest.fixture
def offline(make_db: MakeDb) -> Database:
    """An instance whose database does not exist: validation must answer before any connection."""
    return make_db("postgresql://nobody:nothing@127.0.0.1:9/none?connect_timeout=2")


# -- read_invoices ------------------------------------------------------------------------------


def test_read_returns_org_and_newest_invoices_first(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    response = read_invoices.handle({"org_id": acme}, instance)
    assert response["statusCode"] == 200
    payload = body(response)
    assert payload["org"] == {"id": acme, "name": "acme", "credits": 1000}
    assert [i["amount"] for i in payload["invoices"]] == [800, 1200]  # 1 day old, then 30 days
    assert payload["has_more"] is False
    issued = [i["issued_at"] for i in payload["invoices"]]
    assert issued == sorted(issued, reverse=True)


def test_read_org_without_invoices_and_truncation(instance: Database, ledger: Ledger) -> None:
    empty = ledger.new_org("empty", 5)
    assert body(read_invoices.handle({"org_id": empty}, instance))["invoices"] == []
    busy = ledger.new_org("busy", 5)
    with ledger.connect() as conn:
        conn.execute(
            "INSERT INTO invoices (org_id, amount, issued_at)"
            " SELECT %s, n, now() - n * interval '1 minute' FROM generate_series(1, %s) n",
            (busy, read_invoices.MAX_INVOICES + 1),
        )
    payload = body(read_invoices.handle({"org_id": busy}, instance))
    assert len(payload["invoices"]) == read_invoices.MAX_INVOICES
    assert payload["invoices"][0]["amount"] == 1  # the newest
    assert payload["has_more"] is True


def test_read_unknown_org_is_404(instance: Database) -> None:
    response = read_invoices.handle({"org_id": 987654}, instance)
    assert response["statusCode"] == 404
    assert body(response)["error"] == "org_not_found"


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({}, "missing field 'org_id'"),
        ({"org_id": "1"}, "got a string"),
        ({"org_id": True}, "got a boolean"),
        ({"org_id": 1.0}, "got a number with a fraction"),
        ({"org_id": None}, "got null"),
        ({"org_id": 0}, "from 1 to"),
        ({"org_id": 2**63}, "from 1 to"),
        ({"org_id": 1, "extra": 1}, "unknown field(s) extra"),
        ([1], "must be a JSON object"),
        (None, "must be a JSON object"),
    ],
)
def test_read_bad_event_is_400(offline: Database, event: Any, says: str) -> None:
    response = read_invoices.handle(event, offline)
    assert response["statusCode"] == 400
    assert says in body(response)["message"]
    assert offline.stats.connects == 0  # rejected before touching the database


# -- charge_credits -----------------------------------------------------------------------------


def test_charge_deducts_and_records_balance_after(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    response = charge_credits.handle({"org_id": acme, "amount": 300, "idempotency_key": "k-1"}, instance)
    assert response["statusCode"] == 200
    payload = body(response)
    assert payload["amount"] == 300 and payload["balance_after"] == 700 and payload["org_id"] == acme
    assert ledger.credits(acme) == 700
    [row] = ledger.charges(acme)
    assert row == {"id": payload["charge_id"], "org_id": acme, "amount": 300,
                   "idempotency_key": "k-1", "balance_after": 700}


def test_replayed_key_answers_like_the_first_time_and_charges_once(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    event = {"org_id": acme, "amount": 120, "idempotency_key": "order-77"}
    first = charge_credits.handle(event, instance)
    # Another charge in between changes the balance; the replay still answers the original one.
    charge_credits.handle({"org_id": acme, "amount": 5, "idempotency_key": "other"}, instance)
    again = charge_credits.handle(dict(event), instance)
    assert first["statusCode"] == again["statusCode"] == 200
    assert again["body"] == first["body"]
    assert ledger.credits(acme) == 1000 - 120 - 5
    assert [c["idempotency_key"] for c in ledger.charges(acme)] == ["order-77", "other"]


def test_reused_key_for_another_charge_is_409(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    assert charge_credits.handle({"org_id": acme, "amount": 10, "idempotency_key": "k"}, instance)[
        "statusCode"] == 200
    before = ledger.snapshot()
    response = charge_credits.handle({"org_id": acme, "amount": 11, "idempotency_key": "k"}, instance)
    assert response["statusCode"] == 409
    assert body(response)["error"] == "idempotency_key_reused"
    assert "use a new key" in body(response)["message"]
    assert ledger.snapshot() == before


def test_another_orgs_key_is_a_new_key_for_the_caller_and_reveals_nothing(
    instance: Database, ledger: Ledger
) -> None:
    # #31.6: keys were unique across all orgs, so globex reusing acme's key got a 409 naming acme's
    # id and amount, and could never use that key. A key belongs to the org that used it.
    acme, globex = ledger.org_id("acme"), ledger.org_id("globex")
    first = charge_credits.handle({"org_id": acme, "amount": 17, "idempotency_key": "order-1"}, instance)
    assert first["statusCode"] == 200
    theirs = charge_credits.handle({"org_id": globex, "amount": 3, "idempotency_key": "order-1"}, instance)
    assert theirs["statusCode"] == 200, theirs["body"]
    payload = body(theirs)
    assert (payload["org_id"], payload["amount"], payload["balance_after"]) == (globex, 3, 47)
    assert payload["charge_id"] != body(first)["charge_id"]
    # A different amount under globex's own key is a 409 about globex's charge only.
    conflict = charge_credits.handle({"org_id": globex, "amount": 4, "idempotency_key": "order-1"}, instance)
    assert conflict["statusCode"] == 409
    assert set(body(conflict)) == {"error", "message"}
    message = body(conflict)["message"]
    assert f"organisation {globex} for a charge of 3" in message
    assert f"organisation {acme}" not in message and "17" not in message
    # Each org's replay answers its own charge.
    assert charge_credits.handle({"org_id": acme, "amount": 17, "idempotency_key": "order-1"}, instance)[
        "body"] == first["body"]
    assert charge_credits.handle({"org_id": globex, "amount": 3, "idempotency_key": "order-1"}, instance)[
        "body"] == theirs["body"]
    assert (ledger.credits(acme), ledger.credits(globex)) == (1000 - 17, 50 - 3)


def test_insufficient_credits_is_402_and_writes_nothing(instance: Database, ledger: Ledger) -> None:
    globex = ledger.org_id("globex")  # 50 credits
    before = ledger.snapshot()
    response = charge_credits.handle({"org_id": globex, "amount": 51, "idempotency_key": "big"}, instance)
    assert response["statusCode"] == 402
    assert body(response) | {"message": ""} == {
        "error": "insufficient_credits", "message": "", "credits": 50, "amount": 51}
    assert ledger.snapshot() == before
    # Only successful charges are recorded: the same key succeeds once the credits are there.
    ledger.set_credits(globex, 100)
    retry = charge_credits.handle({"org_id": globex, "amount": 51, "idempotency_key": "big"}, instance)
    assert retry["statusCode"] == 200 and body(retry)["balance_after"] == 49
    # Exactly the whole balance is allowed.
    exact = charge_credits.handle({"org_id": globex, "amount": 49, "idempotency_key": "all"}, instance)
    assert exact["statusCode"] == 200 and body(exact)["balance_after"] == 0


def test_unknown_org_is_404_and_writes_nothing(instance: Database, ledger: Ledger) -> None:
    before = ledger.snapshot()
    response = charge_credits.handle({"org_id": 424242, "amount": 1, "idempotency_key": "x"}, instance)
    assert response["statusCode"] == 404
    assert ledger.snapshot() == before


_GOOD = {"org_id": 1, "amount": 5, "idempotency_key": "k"}
_BAD_CHARGES: list[tuple[dict[str, Any], str]] = [
    ({"org_id": None}, "'org_id' must be a whole number"),
    ({"amount": True}, "got a boolean"),
    ({"amount": 0}, "'amount' must be from 1"),
    ({"amount": -5}, "'amount' must be from 1"),
    ({"amount": 2.5}, "got a number with a fraction"),
    ({"amount": "5"}, "got a string"),
    ({"amount": 2**63}, "'amount' must be from 1"),
    ({"idempotency_key": 7}, "'idempotency_key' must be a string, got an integer"),
    ({"idempotency_key": ""}, "must not be empty"),
    ({"idempotency_key": "   "}, "must not be empty"),
    ({"idempotency_key": "x" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1)}, "the maximum is 255"),
    ({"idempotency_key": "a\x00b"}, "control characters"),
    ({"currency": "EUR"}, "unknown field(s) currency"),
    ({"org_id": ...}, "missing field 'org_id'"),
    ({"amount": ...}, "missing field 'amount'"),
    ({"idempotency_key": ...}, "missing field 'idempotency_key'"),
]


def _bad_charge(change: dict[str, Any], org_id: int = 1) -> dict[str, Any]:
    event = {**_GOOD, "org_id": org_id, **change}
    return {k: v for k, v in event.items() if v is not ...}  # `...` marks a field to leave out


@pytest.mark.parametrize(("change", "says"), _BAD_CHARGES)
def test_charge_bad_event_is_400(offline: Database, change: dict[str, Any], says: str) -> None:
    response = charge_credits.handle(_bad_charge(change), offline)
    assert response["statusCode"] == 400
    assert body(response)["error"] == "bad_request"
    assert says in body(response)["message"]
    assert offline.stats.connects == 0  # rejected before touching the database


def test_bad_charges_write_nothing_on_a_live_database(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    before = ledger.snapshot()
    for change, _ in _BAD_CHARGES:
        assert charge_credits.handle(_bad_charge(change, acme), instance)["statusCode"] == 400
    assert ledger.snapshot() == before
    assert charge_credits.handle(_bad_charge({}, acme), instance)["statusCode"] == 200  # the control


def test_longest_allowed_key_works(instance: Database, ledger: Ledger) -> None:
    key = "ü" * MAX_IDEMPOTENCY_KEY_LENGTH
    response = charge_credits.handle({"org_id": ledger.org_id("acme"), "amount": 1, "idempotency_key": key}, instance)
    assert response["statusCode"] == 200
    assert ledger.charges()[0]["idempotency_key"] == key


# -- 503 and 500: the database is unavailable or the function misconfigured ------------------------


def _assert_no_secret(text: str, db_: AppDatabase) -> None:
    # Boolean asserts: pytest would print the operands (the password) of a failing `not in`.
    assert (db_.password in text) is False
    assert ("postgresql://" in text) is False


def test_unreachable_database_is_503(
    schema_db: AppDatabase, pooler: RunningPooler, make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = pooler.url().replace(f":{pooler.port}/", f":{free_port()}/")
    response = charge_credits.handle({"org_id": 1, "amount": 1, "idempotency_key": "k"}, make_db(url))
    assert response["statusCode"] == 503
    payload = body(response)
    assert (payload["error"], payload["reason"], payload["retryable"]) == ("database_unavailable", "unreachable", True)
    assert "retry later" in payload["message"]
    _assert_no_secret(response["body"] + caplog.text, schema_db)


def test_wrong_password_is_503_not_retryable_and_never_echoed(
    schema_db: AppDatabase, pooler: RunningPooler, make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-" + schema_db.password
    response = read_invoices.handle({"org_id": 1}, make_db(pooler.url(password=wrong)))
    assert response["statusCode"] == 503
    payload = body(response)
    assert (payload["reason"], payload["retryable"]) == ("authentication_failed", False)
    assert "check the DATABASE_URL secret" in payload["message"]
    _assert_no_secret(response["body"] + caplog.text, schema_db)
    assert (wrong in response["body"] + caplog.text) is False


def test_pool_exhausted_past_query_wait_timeout_is_503_then_recovers(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb, ledger: Ledger
) -> None:
    pooler = start_pooler(default_pool_size=1, query_wait_timeout=1)
    instance = make_db(pooler.url())
    acme = ledger.org_id("acme")
    assert read_invoices.handle({"org_id": acme}, instance)["statusCode"] == 200  # warm
    with psycopg.connect(pooler.url(), autocommit=True, prepare_threshold=None) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # holds the only server connection
        started = time.monotonic()
        response = charge_credits.handle({"org_id": acme, "amount": 1, "idempotency_key": "q"}, instance)
        waited = time.monotonic() - started
        holder.execute("COMMIT")
    assert response["statusCode"] == 503
    assert body(response)["reason"] == "pool_timeout"
    assert "query_wait_timeout" in body(response)["message"]
    assert waited < 5, "one queue wait, not a retry that waits again"
    assert ledger.charges() == []
    # The pooler closed that client; the next invocation reconnects and works.
    assert charge_credits.handle({"org_id": acme, "amount": 1, "idempotency_key": "q"}, instance)["statusCode"] == 200
    assert instance.stats.reconnects == 1


def test_statement_timeout_is_set_locally_and_answers_503(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger
) -> None:
    acme = ledger.org_id("acme")
    instance = make_db(pooler.url(), statement_timeout_ms=300)
    with ledger.connect() as holder, holder.transaction():
        holder.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE", (acme,))
        response = charge_credits.handle({"org_id": acme, "amount": 1, "idempotency_key": "t"}, instance)
    assert response["statusCode"] == 503
    assert body(response)["reason"] == "statement_timeout"
    assert ledger.charges() == [] and ledger.credits(acme) == 1000
    # The connection survives a cancelled statement: no reconnect needed.
    assert charge_credits.handle({"org_id": acme, "amount": 1, "idempotency_key": "t"}, instance)["statusCode"] == 200
    assert instance.stats.connects == 1


def test_missing_configuration_is_500_and_the_log_says_what_to_set(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = read_invoices.handle({"org_id": 1}, Database(env={}))
    assert response["statusCode"] == 500
    assert body(response) == {"error": "misconfigured", "message": MISCONFIGURED}
    assert "set DATABASE_URL" in caplog.text and "DATABASE_URL_SECRET_ARN" in caplog.text


@pytest.mark.usefixtures("aws")
def test_a_misconfigured_function_tells_the_caller_nothing_of_its_setup(caplog: pytest.LogCaptureFixture) -> None:
    # #31.6: the caller used to get the ConfigurationError's text, the secret's ARN (with the AWS
    # account id) and the IAM action the role lacks. The detail belongs in the function's log.
    account, arn = "210987654321", f"arn:aws:secretsmanager:{REGION}:210987654321:secret:lifeguard/DATABASE_URL-AbCdEf"
    instance = Database(env={"DATABASE_URL_SECRET_ARN": arn}, secrets_client_factory=CountingSecrets())
    with caplog.at_level(logging.ERROR):
        response = charge_credits.handle({"org_id": 1, "amount": 1, "idempotency_key": "m"}, instance)
    assert response["statusCode"] == 500
    assert body(response) == {"error": "misconfigured", "message": MISCONFIGURED}
    for detail in (arn, account, "secretsmanager", "ResourceNotFoundException"):
        assert detail not in response["body"]
    assert f"could not read the database secret {arn} (ResourceNotFoundException)" in caplog.text


# -- the Lambda entry points: module-level default instance, configured from the environment --------


@pytest.fixture
def default_db(monkeypatch: pytest.MonkeyPatch, pooler: RunningPooler) -> Any:
    monkeypatch.setenv("DATABASE_URL", pooler.url())
    monkeypatch.delenv("DATABASE_URL_SECRET_ARN", raising=False)
    db.reset()
    yield db.default
    db.reset()


def test_lambda_entry_points_share_one_lazy_connection(default_db: Database, ledger: Ledger) -> None:
    assert default_db.stats.connects == 0  # nothing opened at import time
    acme = ledger.org_id("acme")
    assert read_invoices.handler({"org_id": acme}, None)["statusCode"] == 200
    assert charge_credits.handler({"org_id": acme, "amount": 2, "idempotency_key": "e"}, None)["statusCode"] == 200
    assert read_invoices.handler({"org_id": acme}, None)["statusCode"] == 200
    assert default_db.stats.connects == 1
    assert body(read_invoices.handler({"org_id": acme}, None))["org"]["credits"] == 998


def test_one_database_refuses_two_invocations_at_once(instance: Database, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with instance.transaction():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(RuntimeError, match="give each concurrent instance its own"):
            read_invoices.handle({"org_id": acme}, instance)
    finally:
        release.set()
        thread.join()


# -- hardening (issue 14) --------------------------------------------------------------------------


def test_misconfigured_statement_timeout_is_500_before_any_connection(
    pooler: RunningPooler, caplog: pytest.LogCaptureFixture
) -> None:
    # 3e9 ms is more than Postgres' int: SET LOCAL would fail on every call, a 503 that looks retryable.
    instance = Database(env={"DATABASE_URL": pooler.url(), "LIFEGUARD_STATEMENT_TIMEOUT_MS": "3000000000"})
    for _ in range(2):
        response = charge_credits.handle({"org_id": 1, "amount": 1, "idempotency_key": "m"}, instance)
        assert response["statusCode"] == 500
        assert body(response) == {"error": "misconfigured", "message": MISCONFIGURED}
    assert "LIFEGUARD_STATEMENT_TIMEOUT_MS must be from 0 to 2147483647" in caplog.text
    assert instance.stats.connects == 0


def test_a_replay_answers_the_same_bytes_whatever_the_session_time_zone(
    schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger
) -> None:
    acme = ledger.org_id("acme")
    event = {"org_id": acme, "amount": 7, "idempotency_key": "tz-1"}
    first = charge_credits.handle(event, make_db(schema_db.direct_url))
    invoices = read_invoices.handle({"org_id": acme}, make_db(schema_db.direct_url))
    with ledger.connect() as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} IN DATABASE {} SET timezone = 'Asia/Kathmandu'").format(
                psycopg.sql.Identifier(schema_db.user), psycopg.sql.Identifier(schema_db.dbname)
            )
        )
    # A new instance (new connection) gets the +05:45 session zone.
    again = charge_credits.handle(dict(event), make_db(schema_db.direct_url))
    assert again["body"] == first["body"]
    assert body(again)["created_at"].endswith("+00:00")
    invoices_again = read_invoices.handle({"org_id": acme}, make_db(schema_db.direct_url))
    assert invoices_again["body"] == invoices["body"]
    assert all(i["issued_at"].endswith("+00:00") for i in body(invoices_again)["invoices"])
    assert ledger.credits(acme) == 1000 - 7


@pytest.mark.parametrize("sign", [1, -1])
def test_an_int_too_long_to_print_is_400(offline: Database, sign: int) -> None:
    huge = sign * 10**5000  # built here: pytest's test ids would try to print it
    for response in (
        charge_credits.handle({"org_id": 1, "amount": huge, "idempotency_key": "k"}, offline),
        read_invoices.handle({"org_id": huge}, offline),
    ):
        assert response["statusCode"] == 400
        assert "must be from 1 to 9223372036854775807, got a number of about 5000 digits" in body(response)["message"]
    assert offline.stats.connects == 0
