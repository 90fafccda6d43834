"""The Node.js read_invoices (lambdas-node/) under real Node.js, through a real PgBouncer, TLS verified.

It keeps lambdas/read_invoices.py's contract: the same example events answer the same status and the
very same body bytes as the Python function; bad input gets the same 400s; failures map to the same
reasons and JSON log fields; a warm instance survives a PgBouncer restart and a secret change.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from lambdas import read_invoices
from lambdas.db import ClientSettings, ConfigurationError, Database
from lambdas.example_events import EXPECTED_STATUS, example_event
from lifeguard.stack.pooler_ca import authority_pair, server_certificate
from lifeguard.stack.system import free_port
from pgbouncer.settings import Upstream
from pgbouncer.tls import ServerCertificate
from tests.lambdas.node_support import NodeInstance
from tests.lambdas.proxy import FaultyProxy
from tests.lambdas.support import POOL_SIZE, REGION, Ledger, body
from tests.lambdas.test_secret_rotation import NEW_PASSWORD, set_password
from tests.support import AppDatabase, RunningPooler

# Events Python and Node.js both refuse with the same words (JSON can carry each of them).
BAD_EVENTS: list[object] = [
    None, [], ["org_id"], "org_id=1", 7, {}, {"org_id": None}, {"org_id": "1"}, {"org_id": 1.5}, {"org_id": True},
    {"org_id": 0}, {"org_id": -3}, {"org_id": [1]}, {"org_id": {"id": 1}}, {"org_id": ""},
    {"org_id": 1, "colour": "blue"}, {"b": 1, "a": 2},
]


class VerifiedPooler:
    """A PgBouncer serving a certificate of a CA of our own, as the stack's does; restartable."""

    def __init__(self, pooler: RunningPooler, certificate: ServerCertificate, ca_file: Path) -> None:
        self.pooler, self.certificate, self.ca_file = pooler, certificate, ca_file

    def url(self, password: str | None = None) -> str:
        return self.pooler.url(password=password, sslmode="verify-full", sslrootcert=str(self.ca_file))

    def env(self) -> dict[str, str]:
        """What the stack gives a function besides the URL (``LocalStack.client_env``, infra's environment)."""
        return {"LIFEGUARD_POOLER_PREPARED_STATEMENTS": "1", "NODE_EXTRA_CA_CERTS": str(self.ca_file)}

    def restart(self, password: str | None = None) -> None:
        """Stop and start PgBouncer; with ``password`` it logs the role in with that one (in plain text:
        after ``ALTER ROLE ... PASSWORD`` Postgres holds a verifier of a salt of its own)."""
        db = self.pooler.db
        self.pooler.process.stop(signal.SIGQUIT, timeout=10)
        credential = db.verifier if password is None else password
        self.pooler.process.start({db.user: credential}, certificate=self.certificate)


@pytest.fixture
def verified(schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path) -> VerifiedPooler:
    certificate = server_certificate(tmp_path)
    pooler = start_pooler(default_pool_size=POOL_SIZE, certificate=certificate)
    return VerifiedPooler(pooler, certificate, authority_pair(tmp_path).cert_file)


@pytest.fixture
def instances(node_function: Path) -> Iterator[Callable[[dict[str, str]], NodeInstance]]:
    started: list[NodeInstance] = []

    def start(env: dict[str, str]) -> NodeInstance:
        instance = NodeInstance(node_function, env)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process.poll() is None:
            instance.close()


def test_the_example_events_answer_as_the_python_function_does(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance], ledger: Ledger
) -> None:
    assert ledger.org_id("acme") == 1
    node = instances({**verified.env(), "DATABASE_URL": verified.url()})
    python = Database(url=verified.url(), env={})
    try:
        for case, status in EXPECTED_STATUS["read_invoices"].items():
            event = example_event("read_invoices", case)
            expected = read_invoices.handle(event, python)
            assert expected["statusCode"] == status
            # The very same bytes: sorted keys, ISO 8601 UTC timestamps with microseconds, numbers.
            assert node.invoke(event) == expected, case
        ok = body(node.invoke(example_event("read_invoices", "ok")))
        assert ok["org"]["name"] == "acme" and len(ok["invoices"]) == 2 and ok["has_more"] is False
        # The module's own entry point (its module-level instance) answers the same.
        assert node.handler(example_event("read_invoices", "ok")) == read_invoices.handle(
            example_event("read_invoices", "ok"), python)
    finally:
        python.close()
    # One connection per instance, opened on the first invocation and kept while warm.
    assert node.stats() == {"connects": 1, "reconnects": 0, "secretFetches": 0}


def test_bad_events_get_the_python_functions_400s(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance]
) -> None:
    node = instances({**verified.env(), "DATABASE_URL": verified.url()})
    python = Database(url=verified.url(), env={})
    for event in BAD_EVENTS:
        expected = read_invoices.handle(event, python)
        assert expected["statusCode"] == 400, event
        assert node.invoke(event) == expected, event
    # Past 2^53 JSON numbers are already rounded when Node.js reads them: refused, never read as another id.
    response = node.invoke({"org_id": 2**60})
    assert response["statusCode"] == 400 and "largest whole number" in body(response)["message"]
    # A bad event never needed the database.
    assert node.stats()["connects"] == 0


def test_a_warm_instance_reconnects_once_after_a_pgbouncer_restart(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance]
) -> None:
    node = instances({**verified.env(), "DATABASE_URL": verified.url()})
    event = example_event("read_invoices", "ok")
    assert node.invoke(event)["statusCode"] == 200
    verified.restart()
    assert node.invoke(event)["statusCode"] == 200
    assert node.invoke(event)["statusCode"] == 200
    assert node.stats() == {"connects": 2, "reconnects": 1, "secretFetches": 0}
    assert any(line.get("outcome") in ("idle_closed", "warm_dead") for line in node.logs), node.logs


def test_a_silently_lost_warm_connection_is_reopened_once_at_begin(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance],
    proxies: Callable[[int], FaultyProxy],
) -> None:
    """Nothing announces the loss (no FIN, nothing to read, as after a frozen instance's flow was
    forgotten): the BEGIN meets a reset, nothing of the invocation ran, so it reconnects once, and only once."""
    proxy = proxies(verified.pooler.port)
    url = verified.url().replace(f":{verified.pooler.port}/", f":{proxy.port}/")
    node = instances({**verified.env(), "DATABASE_URL": url})
    event = example_event("read_invoices", "ok")
    assert node.invoke(event)["statusCode"] == 200
    proxy.cut_next_send()
    assert node.invoke(event)["statusCode"] == 200
    assert node.stats() == {"connects": 2, "reconnects": 1, "secretFetches": 0}
    assert any(line.get("outcome") == "warm_dead" for line in node.logs), node.logs
    proxy.cut_next_send(times=2)  # the BEGIN, then the reconnect's first packet
    response = node.invoke(event)
    assert response["statusCode"] == 503 and body(response)["reason"] == "unreachable", body(response)
    assert node.invoke(event)["statusCode"] == 200  # the next invocation starts afresh


def test_failures_answer_the_python_reasons_and_log_json_without_the_url(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance]
) -> None:
    event = example_event("read_invoices", "ok")
    cases = {
        # Nothing listens on the port: unreachable, retryable.
        "unreachable": "postgresql://lifeguard_app:n0t-this-one@127.0.0.1:9/none?sslmode=verify-full",
        "authentication_failed": verified.url(password="n0t-this-one"),
    }
    for reason, url in cases.items():
        node = instances({**verified.env(), "DATABASE_URL": url, "LIFEGUARD_CONNECT_TIMEOUT": "2"})
        response = node.invoke(event)
        expected = read_invoices.handle(event, Database(url=url, env={}))
        assert response == expected and body(response)["reason"] == reason, body(response)
        fields = [{k: line.get(k) for k in ("function", "outcome", "reason") if k in line} for line in node.logs]
        assert {"outcome": "connect_failed", "reason": reason} in fields
        assert {"function": "read_invoices", "outcome": "database_unavailable", "reason": reason} in fields
        output = node.close()
        assert "n0t-this-one" not in output and "postgresql://" not in output
    # Misconfigured: 500 with a fixed sentence; the log says what to change.
    node = instances({"LIFEGUARD_POOLER_PREPARED_STATEMENTS": "maybe", "DATABASE_URL": verified.url()})
    response = node.invoke(event)
    assert response["statusCode"] == 500 and body(response)["error"] == "misconfigured"
    assert any("LIFEGUARD_POOLER_PREPARED_STATEMENTS must be 1 or 0" in line["message"] for line in node.logs)
    node = instances({})
    assert body(node.invoke(event))["error"] == "misconfigured"
    assert any("no database configured: set DATABASE_URL" in line["message"] for line in node.logs)


@pytest.mark.parametrize(("overrides", "reason"), [
    # Past max_client_conn PgBouncer refuses the login outright.
    ({"max_client_conn": 2}, "overloaded"),
    # A pooler that never reached its database: "client_login_timeout (server down)".
    ({"upstream": "nowhere", "client_login_timeout": 1}, "database_unreachable"),
])
def test_the_poolers_own_refusals_answer_the_python_reasons(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path,
    instances: Callable[[dict[str, str]], NodeInstance], overrides: dict[str, object], reason: str,
) -> None:
    certificate = server_certificate(tmp_path)
    if overrides.get("upstream") == "nowhere":
        overrides = {**overrides, "upstream": Upstream(host="localhost", port=free_port(), dbname=schema_db.dbname)}
    verified = VerifiedPooler(start_pooler(certificate=certificate, **overrides), certificate,
                              authority_pair(tmp_path).cert_file)
    held = [psycopg.connect(verified.url()) for _ in range(2)] if reason == "overloaded" else []
    try:
        node = instances({**verified.env(), "DATABASE_URL": verified.url()})
        response = node.invoke(example_event("read_invoices", "ok"))
        expected = read_invoices.handle(example_event("read_invoices", "ok"), Database(url=verified.url(), env={}))
    finally:
        for conn in held:
            conn.close()
    assert response == expected and body(response)["reason"] == reason, (body(response), node.logs)


BAD_SETTINGS = [
    {"LIFEGUARD_POOLER_PREPARED_STATEMENTS": "maybe"},
    {"LIFEGUARD_POOLER_PREPARED_STATEMENTS": "it's"},
    {"LIFEGUARD_CONNECT_TIMEOUT": "1"},
    {"LIFEGUARD_CONNECT_TIMEOUT": "five"},
    {"LIFEGUARD_CONNECT_TIMEOUT": "9" * 25},
    {"LIFEGUARD_STATEMENT_TIMEOUT_MS": "-1"},
    {"LIFEGUARD_STATEMENT_TIMEOUT_MS": str(2**31)},
]


def test_bad_settings_are_refused_with_the_python_clients_words(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance]
) -> None:
    for settings in BAD_SETTINGS:
        with pytest.raises(ConfigurationError) as refused:
            ClientSettings.from_env(settings)
        node = instances({"DATABASE_URL": verified.url(), **settings})
        response = node.invoke(example_event("read_invoices", "ok"))
        assert response["statusCode"] == 500 and body(response)["error"] == "misconfigured"
        messages = [line["message"] for line in node.logs]
        assert f"read_invoices: misconfigured: {refused.value}" in messages, (settings, messages)
        assert node.stats()["connects"] == 0


@pytest.fixture
def secrets_endpoint() -> Iterator[str]:
    """A moto Secrets Manager over HTTP: what the function's AWS SDK v3 talks to instead of AWS."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_a_warm_instance_reads_the_secret_again_after_a_password_change(
    verified: VerifiedPooler, instances: Callable[[dict[str, str]], NodeInstance], secrets_endpoint: str
) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=secrets_endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = secrets.create_secret(Name="lifeguard/DATABASE_URL", SecretString=verified.url())["ARN"]
    node = instances({**verified.env(), **credentials, "DATABASE_URL_SECRET_ARN": arn,
                      "AWS_ENDPOINT_URL_SECRETS_MANAGER": secrets_endpoint})
    event = example_event("read_invoices", "ok")
    db = verified.pooler.db
    try:
        first = node.invoke(event)
        assert first["statusCode"] == 200, (first, node.logs)
        set_password(verified.pooler, NEW_PASSWORD)
        verified.restart(NEW_PASSWORD)
        secrets.put_secret_value(SecretId=arn, SecretString=verified.url(password=NEW_PASSWORD))
        # The old URL is refused; the instance reads the secret once more and succeeds.
        second = node.invoke(event)
        assert second["statusCode"] == 200, (second, node.logs)
        assert node.stats() == {"connects": 2, "reconnects": 1, "secretFetches": 2}

        # A secret that is still wrong is read once more per connect, then reported, not looped on.
        set_password(verified.pooler, db.password)
        verified.restart(db.password)
        response = node.invoke(event)
        assert response["statusCode"] == 503 and body(response)["reason"] == "authentication_failed"
        assert node.stats()["secretFetches"] == 3
    finally:
        set_password(verified.pooler, db.password)
    output = node.close()
    assert NEW_PASSWORD not in output and db.password not in output and "postgresql://" not in output
    assert json.dumps(db.password)[1:-1] not in output
