"""``lifeguard smoke``: the happy path through moto's Lambda, every way to fail through the Stubber.

moto without Docker never runs a handler; it answers what was queued in its static response queue,
so the happy path checks the requests smoke sends and how it reads real-shaped answers. The
answers' shapes are the ones ``lambdas/`` returns (``tests/pipeline/test_local_pipeline.py`` runs the
smoke test against the real handlers).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto.moto_api._internal.models import moto_api_backend

from lifeguard import cli
from lifeguard.deploy import aws
from lifeguard.deploy.outputs import SmokeTarget
from lifeguard.deploy.smoke import SMOKE_ORG_ID, SmokeReport, new_idempotency_key, run_smoke
from tests.pipeline.support import HOSTILE, REGION, MigrationStack, workflow_commands

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

READ = "lifeguard-dev-read-invoices"
CHARGE = "lifeguard-dev-charge-credits"
TARGET = SmokeTarget(read_function=READ, charge_function=CHARGE)
KEY = "lifeguard-smoke-test-key"
CREATED = "2025-01-02T03:04:05.678901+00:00"


def answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """What the sample functions return: ``{"statusCode", "body"}`` with a JSON body (lambdas/api.py)."""
    return {"statusCode": status, "body": json.dumps(body, separators=(",", ":"), sort_keys=True)}


def read_answer(credits: int, org_id: int = 1) -> dict[str, Any]:
    return answer(200, {"org": {"id": org_id, "name": "acme", "credits": credits},
                        "invoices": [{"id": 2, "amount": 800, "issued_at": CREATED},
                                     {"id": 1, "amount": 1200, "issued_at": CREATED}],
                        "has_more": False})


def charge_answer(balance_after: int, charge_id: int = 17, org_id: int = 1, key: str = KEY) -> dict[str, Any]:
    return answer(200, {"charge_id": charge_id, "org_id": org_id, "amount": 1, "balance_after": balance_after,
                        "idempotency_key": key, "created_at": CREATED})


# -- the happy path through the command line, against moto's Lambda ------------------------------------


def make_function(client: LambdaClient, name: str) -> None:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    client.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                           Code={"ZipFile": code.getvalue()})


def test_smoke_passes_against_correct_answers(
    migration_stack: MigrationStack, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    client = boto3.client("lambda", region_name=REGION)
    make_function(client, READ)
    make_function(client, CHARGE)
    sent: list[tuple[str, dict[str, Any]]] = []
    # moto answers from its queue in order: read, charge, replay, read. Each answer is queued as its
    # request goes out, so the charge answers carry the key smoke generated.
    answers = [
        lambda event: read_answer(1000),
        lambda event: charge_answer(999, key=event["idempotency_key"]),
        lambda event: charge_answer(999, key=event["idempotency_key"]),
        lambda event: read_answer(999),
    ]

    def queue_answer(params: dict[str, Any], **_: Any) -> None:
        event = json.loads(params["Payload"])
        sent.append((params["FunctionName"], event))
        result = answers.pop(0)(event)
        moto_api_backend.set_lambda_simple_result(json.dumps(result), "123456789012", REGION)

    real_lambda_client = aws.lambda_client

    def lambda_client(region: str | None) -> LambdaClient:
        made = real_lambda_client(region)
        made.meta.events.register("provide-client-params.lambda.Invoke", queue_answer)
        return made

    monkeypatch.setattr(aws, "lambda_client", lambda_client)

    code = cli.main(["smoke", "--outputs", str(migration_stack.write(tmp_path)), "--org-id", "1"])

    out = capsys.readouterr().out
    assert code == 0, out
    key = sent[1][1]["idempotency_key"]
    assert re.fullmatch(r"lifeguard-smoke-[0-9a-f-]{36}", key)
    assert sent == [
        (READ, {"org_id": 1}),
        (CHARGE, {"org_id": 1, "amount": 1, "idempotency_key": key}),
        (CHARGE, {"org_id": 1, "amount": 1, "idempotency_key": key}),
        (READ, {"org_id": 1}),
    ]
    assert out.splitlines() == [
        "ok    read org 1: 200, org 'acme' has 1000 credits and 2 invoices",
        "ok    charge 1 credit(s) with a new idempotency key: 200, charge 17, balance 999",
        "ok    replay the same idempotency key: 200, the same answer as the first charge",
        "ok    read org 1 again: 200, org 'acme' has 999 credits and 2 invoices",
        "ok    balance after the charge and its replay: 999 = 1000 - 1: charged exactly once",
        "smoke test passed: 5 checks",
    ]


def test_each_run_uses_a_new_idempotency_key() -> None:
    keys = {new_idempotency_key() for _ in range(3)}
    assert len(keys) == 3
    assert all(re.fullmatch(r"lifeguard-smoke-[0-9a-f-]{36}", key) for key in keys)


# -- every way to fail, with the Stubber ---------------------------------------------------------------


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[LambdaClient, Stubber]]:
    client = boto3.client("lambda", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber


def payload(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def expect(stubber: Stubber, function: str, event: dict[str, Any], result: dict[str, Any] | bytes,
           function_error: str | None = None) -> None:
    raw = result if isinstance(result, bytes) else json.dumps(result).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": payload(raw), "ExecutedVersion": "$LATEST"}
    if function_error:
        response["FunctionError"] = function_error
    stubber.add_response("invoke", response, {
        "FunctionName": function, "InvocationType": "RequestResponse", "Payload": json.dumps(event).encode()})


READ_EVENT = {"org_id": 1}
CHARGE_EVENT = {"org_id": 1, "amount": 1, "idempotency_key": KEY}


def smoke(client: LambdaClient) -> SmokeReport:
    return run_smoke(client, TARGET, org_id=1, new_key=lambda: KEY)


def failure(report: SmokeReport) -> str:
    assert not report.ok and report.failure is not None
    # Nothing runs after the failed check.
    assert report.checks[-1] is report.failure
    return f"{report.failure.name}: {report.failure.detail}"


def test_the_first_read_passes_and_a_failed_charge_stops_the_run(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, read_answer(0))
    expect(stubber, CHARGE, CHARGE_EVENT, answer(402, {
        "error": "insufficient_credits", "message": "organisation 1 has 0 credits, 1 requested",
        "credits": 0, "amount": 1}))
    report = smoke(client)
    assert [check.ok for check in report.checks] == [True, False]
    assert failure(report) == (
        "charge 1 credit(s) with a new idempotency key: expected statusCode 200, got 402 "
        "(insufficient_credits: organisation 1 has 0 credits, 1 requested); "
        "org 1 has too few credits for the smoke charge: top it up or pass --org-id")
    stubber.assert_no_pending_responses()


def test_an_unknown_org_points_at_the_migrations(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, answer(404, {"error": "org_not_found", "message": "no organisation with id 1"}))
    assert "have the migrations (0004_smoke_org.sql creates the smoke test's org 2147483647) run?" in failure(
        smoke(client))


def test_a_function_error_fails_and_never_shows_a_password(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, {
        "errorType": "OperationalError",
        "errorMessage": "connection to postgresql://lifeguard_app:hunter2@10.0.1.5:6432/app failed",
        "requestId": "3f1c", "stackTrace": ["  File handler.py, line 3"]}, function_error="Unhandled")
    message = failure(smoke(client))
    assert message == (f"read org 1: {READ} failed (Unhandled): OperationalError: connection to "
                       "postgresql://lifeguard_app:***@10.0.1.5:6432/app failed")
    assert "hunter2" not in message


def test_a_function_timeout_fails(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, {"errorType": "Sandbox.Timedout",
                                       "errorMessage": "Task timed out after 30.00 seconds"},
           function_error="Unhandled")
    assert "Sandbox.Timedout: Task timed out after 30.00 seconds" in failure(smoke(client))


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (b"Simple Lambda happy path OK", "returned 27 bytes that are not JSON"),
        ({"statusCode": "200", "body": "{}"}, "returned no integer statusCode"),
        ({"statusCode": 200, "body": {"org": {}}}, "returned no string body"),
        ({"statusCode": 200, "body": "<html>"}, "returned a body that is not JSON"),
        ({"statusCode": 200, "body": "[]"}, "the body is not a JSON object"),
        (answer(200, {"invoices": []}), "the body has no 'org' with id 1"),
        (answer(200, {"org": {"id": 1, "credits": "1000"}, "invoices": []}), "no integer 'org.credits'"),
        (answer(200, {"org": {"id": 1, "credits": 1000}}), "the body has no 'invoices' list"),
    ],
)
def test_answers_of_the_wrong_shape_fail(stubbed: tuple[LambdaClient, Stubber], result: dict[str, Any] | bytes,
                                         expected: str) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, result)
    assert expected in failure(smoke(client))


@pytest.mark.parametrize(
    ("charge", "expected"),
    [
        (charge_answer(998), "body.balance_after is 998, expected 999 (1000 - 1)"),
        (charge_answer(999, key="another"), "body.idempotency_key is 'another', expected 'lifeguard-smoke-test-key'"),
        (charge_answer(999, org_id=2), "body.org_id is 2, expected 1"),
    ],
)
def test_a_wrong_charge_answer_fails(stubbed: tuple[LambdaClient, Stubber], charge: dict[str, Any],
                                     expected: str) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, read_answer(1000))
    expect(stubber, CHARGE, CHARGE_EVENT, charge)
    assert expected in failure(smoke(client))


def test_a_replay_that_answers_differently_fails(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, read_answer(1000))
    expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(999))
    # A broken idempotency: the replay created a second charge.
    expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(998, charge_id=18))
    assert failure(smoke(client)) == ("replay the same idempotency key: the replay answered differently from "
                                      "the first charge (fields: balance_after, charge_id)")


def test_a_replay_that_charges_again_fails(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    expect(stubber, READ, READ_EVENT, read_answer(1000))
    expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(999))
    # It answered the same, but took the credit twice.
    expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(999))
    expect(stubber, READ, READ_EVENT, read_answer(998))
    report = smoke(client)
    assert [check.ok for check in report.checks] == [True, True, True, True, False]
    assert failure(report) == ("balance after the charge and its replay: org 1 has 998 credits, expected 999 "
                               "(1000 - 1, once); the replay charged again")


def test_an_aws_refusal_is_a_failed_check(stubbed: tuple[LambdaClient, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("invoke", "ResourceNotFoundException",
                             f"Function not found: arn:aws:lambda:eu-west-1:123456789012:function:{READ}",
                             http_status_code=404)
    assert f"read org 1: invoking {READ} failed: An error occurred (ResourceNotFoundException)" in failure(
        smoke(client))


def test_the_command_exits_1_and_names_the_failed_check(
    stubbed: tuple[LambdaClient, Stubber], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    client, stubber = stubbed
    expect(stubber, READ, {"org_id": 7}, answer(503, {
        "error": "database_unavailable", "message": "the pooler did not answer in 5 s",
        "reason": "connect_timeout", "retryable": True}))
    monkeypatch.setattr(aws, "lambda_client", lambda region: client)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"readInvoicesFunctionName": READ, "chargeCreditsFunctionName": CHARGE}))

    code = cli.main(["smoke", "--outputs", str(outputs), "--org-id", "7"])

    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines() == [
        "FAIL  read org 7: expected statusCode 200, got 503 (database_unavailable: the pooler did not answer "
        "in 5 s); the function cannot reach the database through the pooler",
        "smoke test FAILED at 'read org 7'; the checks after it did not run",
    ]


@pytest.mark.parametrize("org_id", ["0", "-3", "acme"])
def test_bad_org_ids_are_refused(org_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["smoke", "--outputs", "-", "--org-id", org_id])
    assert exited.value.code == 2
    assert "--org-id" in capsys.readouterr().err


def test_the_smoke_test_charges_its_own_org_by_default(
    stubbed: tuple[LambdaClient, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a demo org (production has none) and not a customer's: the org 0004_smoke_org.sql creates.
    client, stubber = stubbed
    # The Stubber checks the event: the read asks for the smoke org when no --org-id is given.
    expect(stubber, READ, {"org_id": SMOKE_ORG_ID}, answer(503, {"error": "database_unavailable"}))
    monkeypatch.setattr(aws, "lambda_client", lambda region: client)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"readInvoicesFunctionName": READ, "chargeCreditsFunctionName": CHARGE}))
    assert cli.main(["smoke", "--outputs", str(outputs)]) == 1
    stubber.assert_no_pending_responses()
    sql = (Path(__file__).resolve().parents[2] / "migrator" / "migrations" / "0004_smoke_org.sql").read_text()
    assert f"VALUES ({SMOKE_ORG_ID}, 'lifeguard-smoke'," in sql


def test_a_function_error_relayed_by_the_command_prints_no_workflow_command(
    stubbed: tuple[LambdaClient, Stubber], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # #31.8: a function's error text can carry what a database wrote, line breaks and all.
    client, stubber = stubbed
    expect(stubber, READ, {"org_id": 7}, {"errorType": "RaiseException", "errorMessage": HOSTILE,
                                          "requestId": "1", "stackTrace": []}, function_error="Unhandled")
    monkeypatch.setattr(aws, "lambda_client", lambda region: client)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"readInvoicesFunctionName": READ, "chargeCreditsFunctionName": CHARGE}))

    assert cli.main(["smoke", "--outputs", str(outputs), "--org-id", "7"]) == 1
    out, err = capsys.readouterr()
    assert "::add-mask::hunter2" in out  # relayed, still readable
    assert workflow_commands(out) == [] and workflow_commands(err) == []


NODE_READ = "lifeguard-dev-read-invoices-node"


@pytest.mark.parametrize(("node_answer", "problem"), [
    (read_answer(5), None),
    (read_answer(4), "the Node.js function answered differently from the Python one (fields: org)"),
    (answer(503, {"error": "database_unavailable", "message": "m", "reason": "unreachable", "retryable": True}),
     "expected statusCode 200, got 503"),
])
def test_the_node_function_must_answer_as_the_python_one(
    stubbed: tuple[LambdaClient, Stubber], node_answer: dict[str, Any], problem: str | None
) -> None:
    client, stubber = stubbed
    target = SmokeTarget(read_function=READ, charge_function=CHARGE, node_read_function=NODE_READ)
    expect(stubber, READ, READ_EVENT, read_answer(5))
    expect(stubber, NODE_READ, READ_EVENT, node_answer)
    if problem is None:
        expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(4))
        expect(stubber, CHARGE, CHARGE_EVENT, charge_answer(4))
        expect(stubber, READ, READ_EVENT, read_answer(4))
    report = run_smoke(client, target, org_id=1, new_key=lambda: KEY)
    if problem is None:
        assert report.ok and report.checks[1].detail == "200, the same answer as the Python function"
    else:
        assert problem in failure(report) and len(report.checks) == 2
    stubber.assert_no_pending_responses()


def test_a_stack_without_the_node_function_is_smoked_without_it() -> None:
    outputs = {"readInvoicesFunctionName": READ, "chargeCreditsFunctionName": CHARGE}
    assert SmokeTarget.from_outputs(outputs, "test").node_read_function is None
    with_node = SmokeTarget.from_outputs({**outputs, "readInvoicesNodeFunctionName": NODE_READ}, "test")
    assert with_node.node_read_function == NODE_READ
