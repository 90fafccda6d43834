"""How driver and pooler refusals map to the reason a caller sees (texts as libpq reports them; the real
pooler produces each reason in tests/lambdas/test_failure_reasons.py)."""

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
        # PgBouncer quoting its own failed server login (server_login_retry): never the caller's credentials.
        ("server login has been failing, cached error: connect failed (server_login_retry)", "database_unreachable"),
        ('server login has been failing, cached error: password authentication failed for user "app" '
         "(server_login_retry)", "database_unreachable"),
        ("server login has been failing, cached error: sorry, too many clients already (server_login_retry)",
         "overloaded"),
        ("pgbouncer cannot connect to server", "database_unreachable"),  # 1.18's wording
        ("FATAL:  client_login_timeout (server down)", "database_unreachable"),
        ("something else entirely", "unreachable"),
    ],
)
def test_refusals_map_to_reasons(text: str, reason: str) -> None:
    assert _classify(psycopg.OperationalError(text), default="unreachable") == reason
