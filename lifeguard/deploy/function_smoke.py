"""The post-deploy smoke test of a user's own function, for a stack without the sample functions.

One synchronous invocation with the user's payload, then the checks, in order, stopping at the
first failure:

1. the invocation: no ``FunctionError`` (the handler raised or timed out) and Lambda's 200;
2. the status: when the answer is API-Gateway-style (a JSON object with ``statusCode``, as a
   function behind API Gateway or a function URL answers), a 2xx, or exactly ``expect_status``;
   asking for a status of an answer without one fails, as that is not what the user expects;
3. each expectation: the value a JSON Pointer (RFC 6901) names in the answer equals the JSON the
   user gave. An API-Gateway-style answer's ``body`` string (base64-decoded when
   ``isBase64Encoded``) is parsed as JSON where it is JSON, so ``/body/status`` reaches into it.

Every quoted value is redacted (:func:`redaction.redact`) and shortened: the answer is the user's,
and can hold what a database wrote. JSON Pointer is hand-written here: the standard is a few lines
(split on ``/``, unescape ``~1`` then ``~0``), and the libraries that implement it are not among
the pipeline install's dependencies (boto3 alone).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from lifeguard.deploy.aws import AWS_ERRORS, explain_aws_error
from lifeguard.deploy.invoke import InvocationError, error_summary, invoke_raw
from lifeguard.deploy.smoke import Check, SmokeReport
from redaction import redact

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# What Lambda's Invoke takes as FunctionName: a name, a partial or full ARN, with an optional version
# or alias (its API reference's pattern, region part simplified).
_FUNCTION = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):)?(?:\d{12}:)?(?:function:)?"
    r"[a-zA-Z0-9_-]{1,64}(?::(?:\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)
_SHOWN = 200
"""At most this many characters of a quoted value: enough to see what differs, never a whole answer."""


class ArgumentProblem(ValueError):
    """A function, payload or expectation the user gave cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Expectation:
    pointer: str
    value: Any

    def label(self) -> str:
        return self.pointer or "(the whole answer)"


@dataclass(frozen=True)
class FunctionSmoke:
    """What to invoke and what its answer must be."""

    function: str
    payload: bytes
    expect_status: int | None = None
    expectations: Sequence[Expectation] = ()


def function_name(text: str) -> str:
    if not _FUNCTION.match(text):
        raise ArgumentProblem(
            f"{text!r} is not a Lambda function name or ARN (NAME, NAME:ALIAS, or "
            "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:ALIAS])"
        )
    return text


def function_region(function: str) -> str | None:
    """The region a full function ARN names (the client must be there); None for a plain name."""
    match = _FUNCTION.match(function)
    return match.group("region") if match else None


def payload(text: str) -> bytes:
    """The event to send: JSON text, or ``@FILE`` holding it. Never quoted back: it may hold a token."""
    source = "it"
    if text.startswith("@"):
        path = text[1:]
        source = f"the file {path}"
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except FileNotFoundError:
            raise ArgumentProblem(f"the file {path} does not exist (--payload @FILE reads the event from FILE)") \
                from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArgumentProblem(f"cannot read the file {path}: {exc.__class__.__name__}") from None
    if not text.strip():
        raise ArgumentProblem(f"{source} is empty: give the event as JSON (e.g. '{{}}') or @FILE")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the payload may hold a token.
        raise ArgumentProblem(f"{source} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                              "give the event as JSON or @FILE") from None
    return json.dumps(event).encode()


def http_status(text: str) -> int:
    try:
        status = int(text)
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        raise ArgumentProblem(f"{text!r} is not an HTTP status code (100-599)")
    return status


def expectation(pointer: str, value: str) -> Expectation:
    _tokens(pointer)
    try:
        expected = json.loads(value)
    except json.JSONDecodeError:
        raise ArgumentProblem(f"the value for {pointer or '(the whole answer)'} is not JSON (quote a string: "
                              f"'\"{value}\"')") from None
    return Expectation(pointer, expected)


def _tokens(pointer: str) -> list[str]:
    """RFC 6901: '' is the whole document; otherwise '/'-separated tokens, ``~1`` for '/', ``~0`` for '~'."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ArgumentProblem(f"{pointer!r} is not a JSON pointer: it must be empty or start with '/' "
                              "(e.g. /body/status)")
    if re.search(r"~(?![01])", pointer):
        raise ArgumentProblem(f"{pointer!r} is not a JSON pointer: '~' must be followed by 0 or 1 "
                              "(~0 for '~', ~1 for '/')")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _show(value: Any) -> str:
    text = redact(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _same(left: Any, right: Any) -> bool:
    """JSON equality: unlike Python's, true is not 1 (and 1.0 is 1, as in JSON)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


class _Failed(Exception):
    """A check failed; the ones after it would say nothing more."""


class _Run:
    def __init__(self, client: LambdaClient, smoke: FunctionSmoke) -> None:
        self.client = client
        self.smoke = smoke
        self.report = SmokeReport()
        self.raw = b""

    def passed(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, True, detail))

    def fail(self, name: str, problem: str) -> NoReturn:
        self.report.checks.append(Check(name, False, problem))
        raise _Failed

    def invoke(self) -> bytes:
        function = self.smoke.function
        name = f"invoke {function}"
        try:
            raw = invoke_raw(self.client, function, self.smoke.payload)
        except InvocationError as exc:
            self.fail(name, str(exc))
        except AWS_ERRORS as exc:
            self.fail(name, f"invoking {function} failed: {explain_aws_error(exc)}")
        self.passed(name, "answered without a function error")
        return raw

    def status(self, answer: Any) -> None:
        """``answer``'s statusCode, its body parsed (for the app's error, when it gave one)."""
        expected = self.smoke.expect_status
        wanted = "2xx" if expected is None else str(expected)
        if not (isinstance(answer, dict) and "statusCode" in answer):
            if expected is not None:
                self.fail("statusCode", f"expected {wanted}, but the answer has no statusCode (it is not an "
                                        "API-Gateway-style response)")
            return
        status = answer["statusCode"]
        if isinstance(status, bool) or not isinstance(status, int):
            self.fail("statusCode", "the answer's statusCode is not an integer")
        if not (200 <= status <= 299 if expected is None else status == expected):
            self.fail("statusCode", f"expected {wanted}, got {status} ({error_summary(answer.get('body'))})")
        self.passed("statusCode", f"{status}" + (" (expected 2xx)" if expected is None else ""))

    def expect(self, document: Any, check: Expectation) -> None:
        name = check.label()
        if document is _NOT_JSON:
            self.fail(name, f"the answer ({len(self.raw)} bytes) is not JSON")
        value, walked = document, ""
        for token in _tokens(check.pointer):
            if isinstance(value, dict):
                if token not in value:
                    where = f"{walked} has" if walked else "the answer has"
                    self.fail(name, f"{where} no member {token!r}")
                value = value[token]
            elif isinstance(value, list):
                if not re.fullmatch(r"0|[1-9]\d*", token) or int(token) >= len(value):
                    self.fail(name, f"{walked or 'the answer'} has no index {token}")
                value = value[int(token)]
            else:
                self.fail(name, f"{walked or 'the answer'} is {_kind(value)}, not an object")
            walked += "/" + token.replace("~", "~0").replace("/", "~1")
        if not _same(value, check.value):
            self.fail(name, f"{_show(value)}, expected {_show(check.value)}")
        self.passed(name, _show(value))

    def run(self) -> None:
        self.raw = self.invoke()
        try:
            answer = json.loads(self.raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = _NOT_JSON
        document = _with_parsed_body(answer)
        self.status(document)
        for check in self.smoke.expectations:
            self.expect(document, check)


_NOT_JSON = object()


def _kind(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array"}.get(
        type(value), "null")


def _with_parsed_body(answer: Any) -> Any:
    """An API-Gateway-style answer with its ``body`` string parsed where it is JSON; anything else as is."""
    if not (isinstance(answer, dict) and "statusCode" in answer and isinstance(answer.get("body"), str)):
        return answer
    body: str = answer["body"]
    if answer.get("isBase64Encoded") is True:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return answer
    with contextlib.suppress(json.JSONDecodeError):
        return {**answer, "body": json.loads(body)}
    return {**answer, "body": body}


def run_function_smoke(client: LambdaClient, smoke: FunctionSmoke) -> SmokeReport:
    """Invoke once and run the checks in order, stopping at the first failure."""
    run = _Run(client, smoke)
    with contextlib.suppress(_Failed):
        run.run()
    return run.report
