"""How driver and pooler refusals map to the reason a caller sees (texts as libpq reports them)."""

import psycopg
import pytest

from lambdas.db import _classify


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("connection failed: FATAL:  sorry, too many clients already", "overloaded"),
        (
            "connection failed: FATAL:  remaining connection slots are reserved for non-replication "
            "superuser connections",
            "overloaded",
        ),
        ("FATAL:  no more connections allowed (max_client_conn)", "overloaded"),
        ("ERROR:  query_wait_timeout", "pool_timeout"),
        ('FATAL:  password authentication failed for user "app"', "authentication_failed"),
        ("something else entirely", "unreachable"),
    ],
)
def test_refusals_map_to_reasons(text: str, reason: str) -> None:
    assert _classify(psycopg.OperationalError(text), default="unreachable") == reason
