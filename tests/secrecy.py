"""Assert a secret is absent without pytest printing it: a plain ``assert pw not in text`` shows
both operands when it fails, which would put the password in the test output."""

import pytest


def assert_no_secret(secret: str, text: str, where: str = "the output") -> None:
    if secret and secret in text:
        pytest.fail(f"a secret leaked into {where}", pytrace=False)
