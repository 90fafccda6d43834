"""Invoke a deployed function synchronously and unwrap its ``{"statusCode", "body"}`` answer.

Lambda answers HTTP 200 even when the handler raised: the failure is only in ``FunctionError``
and the payload is then Lambda's error object, never the app's answer. Both must fail a smoke test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redaction import redact

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient


class InvocationError(Exception):
    """The function did not give an app answer: it raised, timed out, or answered something else."""


@dataclass(frozen=True)
class Reply:
    """A function's app-level answer: its ``statusCode`` and its JSON ``body``, parsed."""

    function: str
    status_code: int
    body: Any

    def error_summary(self) -> str:
        """The app's ``error: message`` for a non-200 answer, or a note that it gave none."""
        return error_summary(self.body)


def error_summary(body: Any) -> str:
    """``error: message`` from an error body of the kit's shape (``lambdas/api.py``), redacted; or a note."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body.get("message")
        return redact(f"{body['error']}: {message}" if isinstance(message, str) else body["error"])
    return "no error code in the body"


def invoke_raw(client: LambdaClient, function: str, payload: bytes) -> bytes:
    """Invoke synchronously and return the function's answer as Lambda gave it, whatever its shape.

    Raises :class:`InvocationError` when the function raised or timed out (``FunctionError``), or
    Lambda answered the invocation with anything but 200."""
    response = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=payload)
    raw = response["Payload"].read()
    if response.get("FunctionError"):
        raise InvocationError(f"{function} failed ({response['FunctionError']}): {_lambda_error(raw)}")
    if response.get("StatusCode") != 200:
        raise InvocationError(f"{function}: Lambda answered the invocation with HTTP {response.get('StatusCode')}")
    return raw


def invoke(client: LambdaClient, function: str, event: dict[str, Any]) -> Reply:
    """Invoke a function of the kit's shape, ``{"statusCode": int, "body": "<JSON>"}``, or raise InvocationError."""
    raw = invoke_raw(client, function, json.dumps(event).encode())
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvocationError(f"{function} returned {len(raw)} bytes that are not JSON") from None
    if not isinstance(payload, dict):
        raise InvocationError(f"{function} returned JSON that is not an object with statusCode and body")
    status, body = payload.get("statusCode"), payload.get("body")
    if isinstance(status, bool) or not isinstance(status, int):
        raise InvocationError(f"{function} returned no integer statusCode")
    if not isinstance(body, str):
        raise InvocationError(f"{function} (statusCode {status}) returned no string body")
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        raise InvocationError(f"{function} (statusCode {status}) returned a body that is not JSON") from None
    return Reply(function=function, status_code=status, body=parsed)


def _lambda_error(raw: bytes) -> str:
    # Lambda's error object: {"errorType", "errorMessage", "stackTrace", ...}; a timeout has the type
    # Sandbox.Timedout. The message is the handler's own text, so credentials in it are masked.
    try:
        error = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "no readable error object"
    if not isinstance(error, dict):
        return "no readable error object"
    kind = error.get("errorType", "error")
    message = error.get("errorMessage", "")
    return redact(f"{kind}: {message}" if message else str(kind))
