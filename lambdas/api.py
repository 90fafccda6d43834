"""Event validation and responses shared by the handlers.

Events are direct-invocation JSON objects; responses are ``{"statusCode": int, "body": str}``
with a JSON body, the shape API Gateway and function URLs also understand.

Validation is hand-written rather than a Pydantic model: three scalar fields do not justify a
compiled dependency in every function zip and its import time on each cold start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

import psycopg

from lambdas.db import ConfigurationError, DatabaseUnavailable
from lambdas.json_types import json_type
from redaction import redact

logger = logging.getLogger(__name__)

BIGINT_MAX = 2**63 - 1
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MISCONFIGURED_MESSAGE = "the function is misconfigured; its log says what to change"
"""All a caller learns of a misconfiguration: the detail names the secret's ARN (with the AWS account
id), settings and the IAM action the role lacks, which is for the operator, in the function's log."""


class Response(TypedDict):
    statusCode: int
    body: str


class BadEvent(ValueError):
    """The event is malformed; the message says which field and what is expected."""


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC, whatever the session's TimeZone: a replay answers the very same bytes."""
    return moment.astimezone(UTC).isoformat()


def respond(status: int, payload: Mapping[str, Any]) -> Response:
    return {"statusCode": status, "body": json.dumps(payload, separators=(",", ":"), sort_keys=True)}


def error(status: int, code: str, message: str, **details: Any) -> Response:
    return respond(status, {"error": code, "message": message, **details})


def require_object(event: object, allowed: Collection[str]) -> Mapping[str, object]:
    if not isinstance(event, Mapping):
        raise BadEvent(f"the event must be a JSON object with {', '.join(sorted(allowed))}")
    unknown = sorted(str(k) for k in event if k not in allowed)
    if unknown:
        raise BadEvent(
            f"unknown field(s) {', '.join(unknown)}; expected only {', '.join(sorted(allowed))}"
        )
    return event


def require_int(event: Mapping[str, object], name: str, *, minimum: int = 1, maximum: int = BIGINT_MAX) -> int:
    if name not in event:
        raise BadEvent(f"missing field {name!r}: a whole number from {minimum} to {maximum}")
    value = event[name]
    # bool is a subclass of int in Python: `true` must not charge 1 credit.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"{name!r} must be a whole number (JSON integer), got {json_type(value, whole_numbers=True)}")
    if not minimum <= value <= maximum:
        raise BadEvent(f"{name!r} must be from {minimum} to {maximum}, got {_shown(value)}")
    return value


def _shown(value: int) -> str:
    """``value`` for a message; Python refuses to print an int of more than 4300 digits (ValueError)."""
    if abs(value) < 10**30:
        return str(value)
    return f"a number of about {int(value.bit_length() * 0.30103)} digits"


def require_key(event: Mapping[str, object], name: str, *, max_length: int = MAX_IDEMPOTENCY_KEY_LENGTH) -> str:
    if name not in event:
        raise BadEvent(f"missing field {name!r}: a non-empty string of at most {max_length} characters")
    value = event[name]
    if not isinstance(value, str):
        raise BadEvent(f"{name!r} must be a string, got {json_type(value, whole_numbers=True)}")
    if not value.strip():
        raise BadEvent(f"{name!r} must not be empty or blank")
    if len(value) > max_length:
        raise BadEvent(f"{name!r} is {len(value)} characters long; the maximum is {max_length}")
    if not value.isprintable():
        raise BadEvent(f"{name!r} must not contain control characters")
    return value


def run(name: str, work: Callable[[], Response]) -> Response:
    """Run a handler body and turn every failure into a response the caller can act on.

    400 bad event, 503 database unavailable (with a stable ``reason`` and whether to retry),
    500 misconfiguration or a bug; the details of a 500 go to the log (masked), never to the caller.
    """
    try:
        return work()
    except BadEvent as exc:
        return error(400, "bad_request", str(exc))
    except DatabaseUnavailable as exc:
        logger.warning("%s: database unavailable: %s", name, exc.reason,
                       extra={"function": name, "outcome": "database_unavailable", "reason": exc.reason})
        return error(503, "database_unavailable", str(exc), reason=exc.reason, retryable=exc.retryable)
    except ConfigurationError as exc:
        logger.error("%s: misconfigured: %s", name, redact(str(exc)),
                     extra={"function": name, "outcome": "misconfigured"})
        return error(500, "misconfigured", MISCONFIGURED_MESSAGE)
    except psycopg.Error as exc:
        # The driver's text can name tables and values but never credentials; keep it in the log.
        logger.exception("%s: database error %s", name, exc.sqlstate,
                         extra={"function": name, "outcome": "database_error", "sqlstate": exc.sqlstate})
        return error(500, "internal_error", "the function failed on a database error; see its log")
