"""The SCRAM verifier the stack computes is the one Postgres would store, byte for byte."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from lifeguard.stack.postgres import PostgresCluster
from pgbouncer.scram import (
    APP_ITERATIONS,
    ITERATIONS,
    MAX_ITERATIONS,
    MIN_APP_ITERATIONS,
    VerifierError,
    check_app_iterations,
    is_verifier,
    parse_verifier,
    scram_verifier,
    verifies,
)

SALT = bytes(range(16))


def test_same_password_and_salt_give_the_same_verifier_and_others_differ() -> None:
    verifier = scram_verifier("pencil", SALT)
    assert verifier == scram_verifier("pencil", SALT)
    assert verifier != scram_verifier("pencil", bytes(16))
    assert verifier != scram_verifier("pencil2", SALT)
    assert verifier.startswith(f"SCRAM-SHA-256${ITERATIONS}:")
    parsed = parse_verifier(verifier)
    assert (parsed.iterations, parsed.salt) == (ITERATIONS, SALT)
    assert str(parsed) == verifier
    assert verifies(verifier, "pencil") and not verifies(verifier, "pencil2")


def test_matches_libpq_for_the_salt_libpq_chose(pg_cluster: PostgresCluster) -> None:
    # libpq draws a random salt; given that salt, our computation must give its exact string.
    password = "s3cr\"et' pa@ss:w%rd#;$*&\\=?/x"
    with pg_cluster.connect_superuser() as conn:
        theirs = conn.pgconn.encrypt_password(password.encode(), b"anyone", b"scram-sha-256").decode()
    parsed = parse_verifier(theirs)
    assert scram_verifier(password, parsed.salt, parsed.iterations) == theirs


def test_postgres_stores_it_as_given_and_the_password_logs_in(pg_cluster: PostgresCluster) -> None:
    role, password = "lg_scram_check", "Only-ASCII-123"
    verifier = scram_verifier(password, SALT)
    with pg_cluster.connect_superuser() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
        try:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
            assert stored == (verifier,)
            with psycopg.connect(pg_cluster.dsn(role, password, "postgres"), connect_timeout=10) as login:
                assert login.execute("SELECT current_user").fetchone() == (role,)
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(pg_cluster.dsn(role, password + "x", "postgres"), connect_timeout=10)
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("password", "salt", "iterations", "message"),
    [
        ("", SALT, ITERATIONS, "empty"),
        ("pässword", SALT, ITERATIONS, "must be ASCII"),
        ("pw", b"", ITERATIONS, "salt is empty"),
        ("pw", SALT, 0, "iterations must be"),
    ],
)
def test_refuses_what_would_not_match_postgres(password: str, salt: bytes, iterations: int, message: str) -> None:
    with pytest.raises(VerifierError, match=message):
        scram_verifier(password, salt, iterations)


def test_parse_refuses_non_canonical_or_short_parts_without_echoing() -> None:
    good = scram_verifier("pw", SALT)
    head, keys = good.rsplit("$", 1)
    stored, server = keys.split(":")
    for broken in (good + "x", f"{head}${stored}", f"{head}${stored[:-4]}:{server}", "plain password",
                   good.replace("SCRAM-SHA-256$4096", "SCRAM-SHA-256$-1"),
                   f"{head}${stored[:-2]}B=:{server}"):  # stray bits in the last base64 character
        assert not is_verifier(broken), broken
        with pytest.raises(VerifierError) as info:
            parse_verifier(broken)
        assert stored not in str(info.value)
    assert is_verifier(good)


@pytest.mark.parametrize("count", [MIN_APP_ITERATIONS, APP_ITERATIONS, ITERATIONS, MAX_ITERATIONS])
def test_the_application_roles_count_takes_the_floor_up_to_scrams_ceiling(count: int) -> None:
    assert check_app_iterations(count, "scramIterations") == count


@pytest.mark.parametrize("count", [MIN_APP_ITERATIONS - 1, 1, 0, -4096, MAX_ITERATIONS + 1])
def test_a_count_below_the_floor_says_what_to_set(count: int) -> None:
    with pytest.raises(VerifierError) as raised:
        check_app_iterations(count, "--scram-iterations")
    message = str(raised.value)
    assert message.startswith(f"--scram-iterations must be from {MIN_APP_ITERATIONS} ")
    assert f"got {count}" in message and f"{APP_ITERATIONS} is the default" in message


@pytest.mark.parametrize("value", [True, 16.0, "16"])
def test_a_count_that_is_not_a_whole_number_is_refused(value: object) -> None:
    with pytest.raises(VerifierError, match="must be a whole number"):
        check_app_iterations(value, "scramIterations")  # type: ignore[arg-type]


def test_the_default_count_is_far_below_postgres_and_not_below_the_floor() -> None:
    # The count exists for the generated password only; 4096 stays what Postgres and users' own roles get.
    assert MIN_APP_ITERATIONS <= APP_ITERATIONS < ITERATIONS == 4096
