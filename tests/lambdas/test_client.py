"""The shared client: configuration, Secrets Manager, warm reuse and the reconnect-once rule."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import boto3
import psycopg
import pytest

from lambdas import charge_credits, read_invoices
from lambdas.api import MISCONFIGURED_MESSAGE
from lambdas.db import ClientSettings, ConfigurationError, Database
from lifeguard.stack.postgres import make_dsn
from tests.lambdas.proxy import FaultyProxy
from tests.lambdas.support import REGION, CountingSecrets, Ledger, body
from tests.support import AppDatabase, RunningPooler

MakeDb = Callable[..., Database]


# -- configuration ------------------------------------------------------------------------------


def test_settings_from_env_defaults_and_overrides() -> None:
    default = ClientSettings.from_env({})
    assert default.prepare_threshold is None
    assert (default.connect_timeout, default.statement_timeout_ms, default.keepalives_idle) == (5, 10_000, 60)
    tuned = ClientSettings.from_env({
        "LIFEGUARD_POOLER_PREPARED_STATEMENTS": "1",
        "LIFEGUARD_CONNECT_TIMEOUT": "3",
        "LIFEGUARD_STATEMENT_TIMEOUT_MS": "0",
        "AWS_LAMBDA_FUNCTION_NAME": "charge-credits-prod",
    })
    assert tuned.prepare_threshold == 5
    assert (tuned.connect_timeout, tuned.statement_timeout_ms) == (3, 0)
    assert tuned.application_name == "charge-credits-prod"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"LIFEGUARD_POOLER_PREPARED_STATEMENTS": "maybe"}, "must be 1 or 0"),
        ({"LIFEGUARD_CONNECT_TIMEOUT": "five"}, "must be a whole number"),
        ({"LIFEGUARD_CONNECT_TIMEOUT": "1"}, "from 2 to 900"),
        ({"LIFEGUARD_CONNECT_TIMEOUT": "901"}, "from 2 to 900"),
        ({"LIFEGUARD_STATEMENT_TIMEOUT_MS": "-1"}, "from 0 to 2147483647"),
        ({"LIFEGUARD_STATEMENT_TIMEOUT_MS": "3000000000"}, "from 0 to 2147483647"),
        ({"LIFEGUARD_STATEMENT_TIMEOUT_MS": "9" * 5000}, "got 5000 characters"),
    ],
)
def test_bad_settings_say_which_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as info:
        ClientSettings.from_env(env)
    assert next(iter(env)) in str(info.value)


def test_url_sources_are_exclusive_and_required() -> None:
    with pytest.raises(ConfigurationError, match="set only one"):
        Database(env={"DATABASE_URL": "postgresql://h/db", "DATABASE_URL_SECRET_ARN": "arn:x"}).resolve()
    with pytest.raises(ConfigurationError, match="no database configured"):
        Database(env={}).resolve()


def test_invalid_url_error_never_quotes_it() -> None:
    secret = "pa ss%zz"
    url = f"postgresql://app:{secret}@host:5432/db?sslmode=require&keepalives=yes-please"
    with pytest.raises(ConfigurationError) as info:
        Database(env={"DATABASE_URL": url}).resolve()
    message = str(info.value)
    # A raw space and a bad %-escape: refused before libpq reads it, saying how to encode it.
    assert "DATABASE_URL cannot be used as written" in message and "percent-encode" in message
    assert (secret in message) is False and ("keepalives" in message) is False
    assert info.value.__cause__ is None and info.value.__context__ is None

    encoded = f"postgresql://app:{quote(secret, safe='')}@host:5432/db?sslmode=require&keepalives_bogus=1"
    with pytest.raises(ConfigurationError) as info:
        Database(env={"DATABASE_URL": encoded}).resolve()
    message = str(info.value)
    assert "DATABASE_URL is not a valid PostgreSQL connection URL" in message
    assert (quote(secret, safe="") in message) is False and ("keepalives_bogus" in message) is False
    assert info.value.__cause__ is None and info.value.__suppress_context__  # libpq's words dropped


def test_connection_parameters(pooler: RunningPooler, make_db: MakeDb, ledger: Ledger) -> None:
    instance = make_db(pooler.url())
    with instance.transaction() as conn:
        params = conn.info.get_parameters()
        assert conn.prepare_threshold is None
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)
    assert (params["keepalives"], params["keepalives_idle"], params["connect_timeout"]) == ("1", "60", "5")
    # The URL's own parameters win over the defaults; the pooler opt-in turns preparing back on.
    tuned = make_db(pooler.url(keepalives_idle=30), pooler_prepared_statements=True, statement_timeout_ms=0)
    with tuned.transaction() as conn:
        assert conn.info.get_parameters()["keepalives_idle"] == "30"
        assert conn.prepare_threshold == 5
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_read_only_transaction_refuses_writes(pooler: RunningPooler, make_db: MakeDb) -> None:
    instance = make_db(pooler.url())
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), instance.transaction(read_only=True) as conn:
        conn.execute("UPDATE orgs SET credits = 0")


def test_swallowed_error_is_not_reported_as_committed(pooler: RunningPooler, make_db: MakeDb, ledger: Ledger) -> None:
    from lambdas.db import TransactionAborted

    instance = make_db(pooler.url())
    acme = ledger.org_id("acme")
    with pytest.raises(TransactionAborted), instance.transaction() as conn:
        conn.execute("UPDATE orgs SET credits = 1 WHERE id = %s", (acme,))
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
    assert ledger.credits(acme) == 1000
    with instance.transaction() as conn:  # the connection is usable afterwards
        assert conn.execute("SELECT 1").fetchone() == (1,)


# -- Secrets Manager ----------------------------------------------------------------------------


def _secret(value: str) -> str:
    return boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="lifeguard/DATABASE_URL", SecretString=value)["ARN"]


def test_secret_fetched_once_per_instance(aws: None, pooler: RunningPooler, ledger: Ledger) -> None:
    arn = _secret(pooler.url())
    counter = CountingSecrets()
    env = {"DATABASE_URL_SECRET_ARN": arn}
    first = Database(env=env, secrets_client_factory=counter)
    try:
        acme = ledger.org_id("acme")
        assert counter.calls == 0  # lazy: nothing before the first invocation
        for n in range(3):
            event = {"org_id": acme, "amount": 1, "idempotency_key": f"s{n}"}
            assert charge_credits.handle(event, first)["statusCode"] == 200
        # A reconnect reuses the URL it already has.
        pooler.process.stop(signal.SIGQUIT, timeout=10)
        pooler.process.start({pooler.db.user: pooler.db.password})
        assert read_invoices.handle({"org_id": acme}, first)["statusCode"] == 200
        assert first.stats.reconnects == 1
        assert (counter.calls, first.stats.secret_fetches, counter.regions) == (1, 1, [REGION])
        second = Database(env=env, secrets_client_factory=counter)  # a new instance fetches its own
        assert read_invoices.handle({"org_id": acme}, second)["statusCode"] == 200
        second.close()
        assert counter.calls == 2
    finally:
        first.close()


def test_secret_problems_are_500_with_what_to_fix_in_the_log(aws: None, caplog: pytest.LogCaptureFixture) -> None:
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope-AbCdEf"
    with caplog.at_level(logging.ERROR):
        response = read_invoices.handle({"org_id": 1}, Database(env={"DATABASE_URL_SECRET_ARN": missing}))
    assert response["statusCode"] == 500
    assert body(response)["message"] == MISCONFIGURED_MESSAGE  # the caller learns nothing of the setup
    assert "ResourceNotFoundException" in caplog.text and "secretsmanager:GetSecretValue" in caplog.text

    garbage = "user=app password=hunter2-secret host"  # not parseable, and must not be echoed
    arn = _secret(garbage)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        response = read_invoices.handle({"org_id": 1}, Database(env={"DATABASE_URL_SECRET_ARN": arn}))
    assert response["statusCode"] == 500
    assert f"the secret {arn} is not a valid PostgreSQL connection URL" in caplog.text
    assert ("hunter2" in response["body"] + caplog.text) is False

    with pytest.raises(ConfigurationError, match="must be a Secrets Manager secret ARN"):
        Database(env={"DATABASE_URL_SECRET_ARN": "lifeguard/DATABASE_URL"}).resolve()


# -- warm reuse and the reconnect-once rule -------------------------------------------------------


def _read(instance: Database, ledger: Ledger) -> int:
    return read_invoices.handle({"org_id": ledger.org_id("acme")}, instance)["statusCode"]


@pytest.mark.parametrize("route", ["pooled", "direct"])
def test_warm_instance_reuses_its_connection(
    route: str, pooler: RunningPooler, schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger
) -> None:
    instance = make_db(pooler.url() if route == "pooled" else schema_db.direct_url)
    for _ in range(5):
        assert _read(instance, ledger) == 200
        time.sleep(0.05)
    assert (instance.stats.connects, instance.stats.reconnects) == (1, 0)


def test_reconnects_after_pooler_client_idle_timeout(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb, ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What a Lambda instance idle for longer than client_idle_timeout finds.
    caplog.set_level(logging.INFO, logger="lambdas.db")
    instance = make_db(start_pooler(client_idle_timeout=1).url())
    assert _read(instance, ledger) == 200
    time.sleep(3)  # PgBouncer checks idle clients about once a second
    assert _read(instance, ledger) == 200
    assert (instance.stats.connects, instance.stats.reconnects) == (2, 1)
    # The pooler said goodbye on the idle socket: seen before sending anything, no failed round trip.
    assert "closed while idle" in caplog.text and "was dead" not in caplog.text


def test_reconnects_after_pooler_restart(pooler: RunningPooler, make_db: MakeDb, ledger: Ledger) -> None:
    instance = make_db(pooler.url())
    assert _read(instance, ledger) == 200
    pooler.process.stop(signal.SIGQUIT, timeout=10)
    pooler.process.start({pooler.db.user: pooler.db.password})
    assert _read(instance, ledger) == 200
    assert (instance.stats.connects, instance.stats.reconnects) == (2, 1)


def test_reconnects_after_direct_backend_terminated(schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger) -> None:
    instance = make_db(schema_db.direct_url)
    with instance.transaction() as conn:
        pid = conn.info.backend_pid
    with schema_db.cluster.connect_superuser() as su:
        su.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert _read(instance, ledger) == 200
    assert (instance.stats.connects, instance.stats.reconnects) == (2, 1)


def test_server_connection_killed_behind_pooler_needs_no_reconnect(
    pooler: RunningPooler, schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger
) -> None:
    instance = make_db(pooler.url())
    assert _read(instance, ledger) == 200
    with schema_db.cluster.connect_superuser() as su:
        killed = su.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND usename = %s AND backend_type = 'client backend'",
            (schema_db.dbname, schema_db.user),
        ).fetchone()
    assert killed is not None and isinstance(killed[0], int) and killed[0] >= 1
    time.sleep(0.2)
    assert _read(instance, ledger) == 200
    assert instance.stats.connects == 1  # the client's connection is to the pooler, which recovered


def test_reconnects_once_when_first_round_trip_hits_a_dead_flow(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger, proxies: Callable[[int], FaultyProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing announces the loss (no FIN, nothing to read): the BEGIN itself meets a reset.
    caplog.set_level(logging.INFO, logger="lambdas.db")
    proxy = proxies(pooler.port)
    instance = make_db(pooler.url().replace(f":{pooler.port}/", f":{proxy.port}/"))
    assert _read(instance, ledger) == 200
    proxy.cut_next_send()
    assert _read(instance, ledger) == 200
    assert (instance.stats.connects, instance.stats.reconnects, proxy.accepted) == (2, 1, 2)
    assert "was dead" in caplog.text


def test_reconnects_only_once(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger, proxies: Callable[[int], FaultyProxy]
) -> None:
    proxy = proxies(pooler.port)
    instance = make_db(pooler.url().replace(f":{pooler.port}/", f":{proxy.port}/"))
    assert _read(instance, ledger) == 200
    proxy.cut_next_send(times=2)  # the BEGIN, then the reconnect's first packet
    response = read_invoices.handle({"org_id": ledger.org_id("acme")}, instance)
    assert response["statusCode"] == 503
    assert body(response)["reason"] == "unreachable"
    assert (instance.stats.reconnects, proxy.accepted) == (1, 2)
    assert _read(instance, ledger) == 200  # the next invocation starts afresh


def test_connection_lost_mid_transaction_is_not_retried(
    pooler: RunningPooler, schema_db: AppDatabase, make_db: MakeDb, ledger: Ledger
) -> None:
    acme = ledger.org_id("acme")
    instance = make_db(pooler.url())
    assert _read(instance, ledger) == 200
    result: dict[str, Any] = {}
    with ledger.connect() as holder, holder.transaction():
        holder.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE", (acme,))
        worker = threading.Thread(target=lambda: result.update(charge_credits.handle(
            {"org_id": acme, "amount": 7, "idempotency_key": "mid"}, instance)))
        worker.start()
        with schema_db.cluster.connect_superuser() as su:
            # The function's server connection, blocked on our row lock inside its transaction.
            for _ in range(100):
                row = su.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (schema_db.dbname,),
                ).fetchone()
                if row:
                    break
                time.sleep(0.05)
            assert row is not None, "the charge never reached its row lock"
            su.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        worker.join(10)
    assert result["statusCode"] == 503
    assert body(result)["reason"] == "connection_lost"  # type: ignore[arg-type]
    assert instance.stats.connects == 1, "no reconnect-and-retry once the transaction had started"
    assert ledger.charges() == [] and ledger.credits(acme) == 1000
    again = charge_credits.handle({"org_id": acme, "amount": 7, "idempotency_key": "mid"}, instance)
    assert again["statusCode"] == 200 and instance.stats.connects == 2


@pytest.mark.parametrize("lost", ["request", "reply"])
def test_lost_commit_is_outcome_unknown_and_a_retry_charges_once(
    lost: str, schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb,
    ledger: Ledger, proxies: Callable[[int], FaultyProxy],
) -> None:
    # Plaintext between client and pooler, so the proxy can find the COMMIT.
    pooler = start_pooler(client_tls_sslmode="disable")
    proxy = proxies(pooler.port)
    url = make_dsn("127.0.0.1", proxy.port, schema_db.user, schema_db.password, schema_db.dbname,
                   sslmode="disable", gssencmode="disable")
    instance = make_db(url)
    acme = ledger.org_id("acme")
    event = {"org_id": acme, "amount": 40, "idempotency_key": f"lost-{lost}"}
    proxy.lose_commit(lost)  # type: ignore[arg-type]
    response = charge_credits.handle(event, instance)
    assert response["statusCode"] == 503
    payload = body(response)
    assert (payload["reason"], payload["retryable"]) == ("outcome_unknown", True)
    assert "same idempotency key" in payload["message"]
    committed = len(ledger.charges()) == 1
    assert committed is (lost == "reply")  # the server did commit when only the answer was lost
    retry = charge_credits.handle(event, instance)
    assert retry["statusCode"] == 200
    assert len(ledger.charges()) == 1 and ledger.credits(acme) == 960
    assert body(retry)["balance_after"] == 960


def test_lost_commit_of_a_read_only_transaction_still_answers(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb,
    ledger: Ledger, proxies: Callable[[int], FaultyProxy],
) -> None:
    pooler = start_pooler(client_tls_sslmode="disable")
    proxy = proxies(pooler.port)
    instance = make_db(make_dsn("127.0.0.1", proxy.port, schema_db.user, schema_db.password, schema_db.dbname,
                                sslmode="disable", gssencmode="disable"))
    proxy.lose_commit("reply")
    response = read_invoices.handle({"org_id": ledger.org_id("acme")}, instance)
    assert response["statusCode"] == 200  # nothing to commit: the rows read stand
    assert _read(instance, ledger) == 200
    assert (instance.stats.connects, proxy.accepted) == (2, 2)


def test_warm_reuse_with_descriptors_above_select_limit(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger
) -> None:
    # A local invoker process hosts thousands of instances: their sockets get fds above 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-files limit ({hard}) is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        instance = make_db(pooler.url())
        for _ in range(3):
            assert _read(instance, ledger) == 200
        assert instance._conn is not None and instance._conn.pgconn.socket > 1024
        assert (instance.stats.connects, instance.stats.reconnects) == (1, 0)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
