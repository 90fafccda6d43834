"""``lifeguard smoke --function``: a user's own function, on a stack without the sample functions.

The happy path runs through moto's Lambda (which answers from its static result queue, as in
test_smoke.py); every way to fail through botocore's Stubber, which also checks the exact request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.moto_api._internal.models import moto_api_backend

from lifeguard import cli
from lifeguard.deploy import aws
from tests.pipeline.support import HOSTILE, REGION, workflow_commands
from tests.pipeline.test_smoke import make_function, payload

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

FUNCTION = "acme-api-health"
EVENT = {"rawPath": "/health", "requestContext": {"http": {"method": "GET"}}}
# A stack of the program with `sampleFunctions: false`: the client's outputs, no sample function.
NO_SAMPLES = {"clientSecurityGroupId": "sg-0123456789abcdef0",
              "pooledSecretPolicyArn": "arn:aws:iam::123456789012:policy/lifeguard-read-pooled"}


def http_answer(status: int, body: Any, **extra: Any) -> dict[str, Any]:
    """An API-Gateway (or function URL) proxy answer, as a user's HTTP function returns it."""
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": body if isinstance(body, str) else json.dumps(body), **extra}


def smoke(*argv: str) -> int:
    return cli.main(["smoke", "--function", FUNCTION, *argv])


# -- passing, through moto's Lambda -------------------------------------------------------------------


def test_a_user_function_that_answers_passes(
    moto_aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("lambda", region_name=REGION)
    make_function(client, FUNCTION)
    sent: list[tuple[str, str, Any]] = []

    def queue_answer(params: dict[str, Any], **_: Any) -> None:
        sent.append((params["FunctionName"], params["InvocationType"], json.loads(params["Payload"])))
        result = http_answer(200, {"status": "ok", "database": {"reachable": True, "latency_ms": 3}})
        moto_api_backend.set_lambda_simple_result(json.dumps(result), "123456789012", REGION)

    real_lambda_client = aws.lambda_client

    def lambda_client(region: str | None) -> LambdaClient:
        made = real_lambda_client(region)
        made.meta.events.register("provide-client-params.lambda.Invoke", queue_answer)
        return made

    monkeypatch.setattr(aws, "lambda_client", lambda_client)

    code = smoke("--payload", json.dumps(EVENT), "--expect", "/body/status", '"ok"',
                 "--expect", "/body/database/reachable", "true", "--expect", "/headers/content-type",
                 '"application/json"')

    out = capsys.readouterr().out
    assert code == 0, out
    assert sent == [(FUNCTION, "RequestResponse", EVENT)]
    assert out.splitlines() == [
        f"ok    invoke {FUNCTION}: answered without a function error",
        "ok    statusCode: 200 (expected 2xx)",
        'ok    /body/status: "ok"',
        "ok    /body/database/reachable: true",
        'ok    /headers/content-type: "application/json"',
        "smoke test passed: 5 checks",
    ]


# -- every way to fail, through the Stubber --------------------------------------------------------------


@pytest.fixture
def stubbed(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("lambda", region_name=REGION)
    monkeypatch.setattr(aws, "lambda_client", lambda region: client)
    with Stubber(client) as stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def expect(stubber: Stubber, event: Any, result: Any, function_error: str | None = None,
           function: str = FUNCTION) -> None:
    raw = result if isinstance(result, bytes) else json.dumps(result).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": payload(raw), "ExecutedVersion": "$LATEST"}
    if function_error:
        response["FunctionError"] = function_error
    stubber.add_response("invoke", response, {
        "FunctionName": function, "InvocationType": "RequestResponse", "Payload": json.dumps(event).encode()})


def test_a_function_error_fails_and_never_shows_a_password(
    stubbed: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    expect(stubbed, EVENT, {
        "errorType": "OperationalError",
        "errorMessage": "connection to postgresql://app:hunter2@10.0.1.5:6432/app failed",
        "requestId": "3f1c", "stackTrace": []}, function_error="Unhandled")
    assert smoke("--payload", json.dumps(EVENT)) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"FAIL  invoke {FUNCTION}: {FUNCTION} failed (Unhandled): OperationalError: connection to "
        "postgresql://app:***@10.0.1.5:6432/app failed",
        f"smoke test FAILED at 'invoke {FUNCTION}'; the checks after it did not run",
    ]
    assert "hunter2" not in out + err


def test_a_relayed_function_error_prints_no_workflow_command(
    stubbed: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    expect(stubbed, {}, {"errorType": "RaiseException", "errorMessage": HOSTILE}, function_error="Unhandled")
    assert smoke("--payload", "{}") == 1
    out, err = capsys.readouterr()
    assert "::add-mask::hunter2" in out  # relayed, still readable
    assert workflow_commands(out) == [] and workflow_commands(err) == []


def test_a_wrong_status_fails_with_the_apps_error(stubbed: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    expect(stubbed, EVENT, http_answer(503, {"error": "database_unavailable", "message": "pooler timeout"}))
    assert smoke("--payload", json.dumps(EVENT), "--expect", "/body/status", '"ok"') == 1
    assert capsys.readouterr().out.splitlines() == [
        f"ok    invoke {FUNCTION}: answered without a function error",
        "FAIL  statusCode: expected 2xx, got 503 (database_unavailable: pooler timeout)",
        "smoke test FAILED at 'statusCode'; the checks after it did not run",
    ]


@pytest.mark.parametrize(("answered", "expected_status", "line"), [
    (http_answer(201, {}), "200", "FAIL  statusCode: expected 200, got 201 (no error code in the body)"),
    (http_answer(204, ""), "204", "ok    statusCode: 204"),
    ({"status": "ok"}, "200", "FAIL  statusCode: expected 200, but the answer has no statusCode "
                              "(it is not an API-Gateway-style response)"),
    ({"statusCode": "200", "body": "{}"}, None, "FAIL  statusCode: the answer's statusCode is not an integer"),
    (http_answer(302, ""), None, "FAIL  statusCode: expected 2xx, got 302 (no error code in the body)"),
])
def test_the_status_code_is_checked(
    stubbed: Stubber, capsys: pytest.CaptureFixture[str], answered: Any, expected_status: str | None, line: str
) -> None:
    expect(stubbed, {}, answered)
    code = smoke("--payload", "{}", *(["--expect-status", expected_status] if expected_status else []))
    assert capsys.readouterr().out.splitlines()[1] == line
    assert code == (0 if line.startswith("ok") else 1)


@pytest.mark.parametrize(("answered", "pointer", "value", "line"), [
    (http_answer(200, {"items": [{"id": 7}]}), "/body/items/0/id", "7", "ok    /body/items/0/id: 7"),
    (http_answer(200, {"items": [{"id": 7}]}), "/body/items/0/id", "8", "FAIL  /body/items/0/id: 7, expected 8"),
    (http_answer(200, {"items": []}), "/body/items/0/id", "7", "FAIL  /body/items/0/id: /body/items has no index 0"),
    (http_answer(200, {"a/b": {"~c": 1}}), "/body/a~1b/~0c", "1", "ok    /body/a~1b/~0c: 1"),
    (http_answer(200, "<html>ok</html>"), "/body", '"<html>ok</html>"', 'ok    /body: "<html>ok</html>"'),
    (http_answer(200, "not json"), "/body/status", '"ok"', "FAIL  /body/status: /body is a string, not an object"),
    (http_answer(200, base64.b64encode(b'{"status": "ok"}').decode(), isBase64Encoded=True), "/body/status",
     '"ok"', 'ok    /body/status: "ok"'),
    # A plain (not API-Gateway-style) answer is checked as it is, with no status to check.
    ({"status": "ok", "count": 2}, "/count", "2", "ok    /count: 2"),
    ({"status": "ok"}, "/missing", "1", "FAIL  /missing: the answer has no member 'missing'"),
    (["a", "b"], "", '["a", "b"]', 'ok    (the whole answer): ["a","b"]'),
    # 1 and true are different JSON values (Python would call them equal).
    ({"n": 1}, "/n", "true", "FAIL  /n: 1, expected true"),
])
def test_expectations_are_json_pointers_into_the_answer(
    stubbed: Stubber, capsys: pytest.CaptureFixture[str], answered: Any, pointer: str, value: str, line: str
) -> None:
    expect(stubbed, {}, answered)
    code = smoke("--payload", "{}", "--expect", pointer, value)
    assert capsys.readouterr().out.splitlines()[-2] == line
    assert code == (0 if line.startswith("ok") else 1)


def test_a_mismatched_value_is_shown_redacted(stubbed: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    expect(stubbed, {}, {"url": "postgresql://app:hunter2@10.0.1.5:6432/app"})
    assert smoke("--payload", "{}", "--expect", "/url", '"postgresql://app@10.0.1.5:6432/app"') == 1
    out = capsys.readouterr().out
    assert "hunter2" not in out and "postgresql://app:***@10.0.1.5:6432/app" in out


def test_an_answer_that_is_not_json_fails_only_a_check_that_needs_it(
    stubbed: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    expect(stubbed, {}, b"OK")
    assert smoke("--payload", "{}") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "smoke test passed: 1 checks"
    expect(stubbed, {}, b"OK")
    assert smoke("--payload", "{}", "--expect", "/status", '"ok"') == 1
    assert "FAIL  /status: the answer (2 bytes) is not JSON" in capsys.readouterr().out


def test_the_payload_can_come_from_a_file(
    stubbed: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event_file = tmp_path / "health.json"
    event_file.write_text(json.dumps(EVENT, indent=2), encoding="utf-8")
    expect(stubbed, EVENT, http_answer(200, {"status": "ok"}))
    assert smoke("--payload", f"@{event_file}", "--expect-status", "200") == 0, capsys.readouterr()


def test_an_arn_sets_the_region_and_is_invoked_as_given(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:lambda:us-east-2:123456789012:function:acme-api-health:live"
    regions: list[str | None] = []
    client = boto3.client("lambda", region_name=REGION)

    def lambda_client(region: str | None) -> LambdaClient:
        regions.append(region)
        return client

    monkeypatch.setattr(aws, "lambda_client", lambda_client)
    with Stubber(client) as own:
        expect(own, {}, {"ok": True}, function=arn)
        expect(own, {}, {"ok": True}, function=arn)
        assert cli.main(["smoke", "--function", arn, "--payload", "{}"]) == 0
        assert cli.main(["smoke", "--function", arn, "--payload", "{}", "--region", "eu-west-1"]) == 0
        expect(own, {}, {"ok": True})
        assert cli.main(["smoke", "--function", FUNCTION, "--payload", "{}"]) == 0
        own.assert_no_pending_responses()
    # The ARN's region unless --region says otherwise; a plain name leaves it to the AWS configuration.
    assert regions == ["us-east-2", "eu-west-1", None]


def test_an_aws_refusal_is_a_failed_check(stubbed: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    stubbed.add_client_error("invoke", "ResourceNotFoundException", f"Function not found: {FUNCTION}",
                             http_status_code=404)
    assert smoke("--payload", "{}") == 1
    assert f"FAIL  invoke {FUNCTION}: invoking {FUNCTION} failed: An error occurred (ResourceNotFoundException)" \
        in capsys.readouterr().out


# -- bad arguments: exit 2 before anything is invoked, the message says what to change -----------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--function", FUNCTION], "--function needs --payload"),
    (["--function", FUNCTION, "--payload", ""], "argument --payload: it is empty"),
    (["--function", FUNCTION, "--payload", '{"token": "s3cret",}'],
     "argument --payload: it is not JSON (line 1, column 20: Expecting property name enclosed in double quotes)"),
    (["--function", FUNCTION, "--payload", "@/nonexistent/event.json"],
     "argument --payload: the file /nonexistent/event.json does not exist"),
    (["--function", "my function!", "--payload", "{}"], "argument --function: 'my function!' is not a Lambda"),
    (["--function", FUNCTION, "--payload", "{}", "--expect-status", "42"],
     "argument --expect-status: '42' is not an HTTP status code (100-599)"),
    (["--function", FUNCTION, "--payload", "{}", "--expect", "body/status", '"ok"'],
     "argument --expect: 'body/status' is not a JSON pointer: it must be empty or start with '/'"),
    (["--function", FUNCTION, "--payload", "{}", "--expect", "/body/status", "ok"],
     "argument --expect: the value for /body/status is not JSON (quote a string: '\"ok\"')"),
    (["--function", FUNCTION, "--payload", "{}", "--expect", "/a~2", "1"],
     "argument --expect: '/a~2' is not a JSON pointer: '~' must be followed by 0 or 1"),
    (["--function", FUNCTION, "--payload", "{}", "--stack", "dev"],
     "argument --stack: not allowed with argument --function"),
    (["--function", FUNCTION, "--payload", "{}", "--org-id", "5"],
     "--org-id is for the sample functions' smoke test"),
    (["--stack", "dev", "--payload", "{}"], "--payload, --expect-status and --expect need --function"),
    (["--stack", "dev", "--expect-status", "200"], "--payload, --expect-status and --expect need --function"),
    ([], "one of the arguments --stack --outputs --function is required"),
])
def test_bad_arguments_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["smoke", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "s3cret" not in err


def test_a_stack_without_samples_says_to_pass_a_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(NO_SAMPLES), encoding="utf-8")
    assert cli.main(["smoke", "--outputs", str(outputs)]) == 2
    err = capsys.readouterr().err
    assert "lifeguard:sampleFunctions false" in err
    assert "lifeguard smoke --function NAME_OR_ARN --payload JSON|@FILE" in err
    assert "LIFEGUARD_SMOKE_FUNCTION" in err and "LIFEGUARD_SMOKE_PAYLOAD" in err
