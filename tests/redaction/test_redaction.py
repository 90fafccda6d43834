"""The kit's one redactor: every form of a password masked, badly encoded URLs refused unquoted."""

from __future__ import annotations

import ast
import io
import logging
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

import redaction
from lambdas import charge_credits
from lambdas.db import Database
from lifeguard.stack.top import TopError, postgres_figures, run_top
from redaction import Redactor, redact, url_problem
from tests.migrator.support import REPO_ROOT, cli_env, migrator_argv
from tests.observability.test_top import top_args
from tests.secrecy import assert_no_secret
from tests.support import AppDatabase

# Not percent-encoded, as people paste them: a raw '/', '@', space, '?', '#'.
RAW_PASSWORDS = ["Xq7ZrTq/Wp3KvLm", "Xq7ZrTq@Wp3KvLm", "Xq7 ZrTq Wp3KvLm", "Xq7ZrTq?Wp3KvLm", "Xq7ZrTq#Wp3KvLm"]


def pieces(password: str) -> list[str]:
    """The password and each piece libpq could quote after misreading the URL."""
    return [password, *(p for p in password.replace("/", " ").replace("@", " ").replace("?", " ")
                        .replace("#", " ").split() if len(p) >= 4)]


def assert_nothing_of(password: str, text: str) -> None:
    for piece in pieces(password):
        assert_no_secret(piece, text)


@pytest.mark.parametrize("password", RAW_PASSWORDS)
def test_a_badly_encoded_url_is_refused_without_quoting_it(password: str) -> None:
    url = f"postgresql://app:{password}@localhost:5432/db?sslmode=require"
    problem = url_problem(url)
    assert problem is not None and "percent-encode" in problem and "%2F" in problem
    assert_nothing_of(password, problem)
    assert url_problem(f"postgresql://app:{quote(password, safe='')}@localhost:5432/db?sslmode=require") is None


@pytest.mark.parametrize("password", RAW_PASSWORDS)
def test_every_piece_of_a_badly_encoded_password_is_masked(password: str) -> None:
    url = f"postgresql://app:{password}@127.0.0.1:5432/db"
    redactor = Redactor([url])
    tail = password[8:]
    text = (f"cannot connect to app:{password}@127.0.0.1; failed to resolve host '{tail}@127.0.0.1'; "
            f"url={url} encoded={quote(password, safe='')}")
    assert_nothing_of(password, redactor(text))
    # And with no URL known at all, the pattern still masks the whole user info up to the last '@'.
    assert_nothing_of(password, redact(f"relayed: {url} failed"))


def test_known_secrets_and_keyword_passwords_are_masked() -> None:
    redactor = Redactor(["host=db password='k3y w0rd' dbname=app"], secrets=["s3cr3t-token"])
    assert redactor("auth failed for k3y w0rd with s3cr3t-token") == "auth failed for *** with ***"
    assert redact("dsn host=db password=hunter2x user=app") == "dsn host=db password=*** user=app"
    assert redact("postgresql://app@db:5432/x") == "postgresql://app@db:5432/x"  # no password, nothing to mask


def test_redactor_filters_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.redaction")
    logger.addFilter(Redactor(["postgresql://user:pa/ss-w0rd@db:5432/app"]))
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting with %s", "postgresql://user:pa/ss-w0rd@db:5432/app")
    assert caplog.messages == ["connecting with ***"]


def test_the_redactor_is_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for path in Path(redaction.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert {n.split(".")[0] for n in names} <= allowed, path


# -- each deployable, with the URL of the issue ------------------------------------------------


def test_migrator_refuses_a_raw_slash_password_and_prints_none_of_it(app_db: AppDatabase) -> None:
    password = RAW_PASSWORDS[0]
    url = f"postgresql://app:{password}@localhost:{app_db.cluster.port}/{app_db.dbname}"
    proc = subprocess.run(migrator_argv("status"), env=cli_env({"DATABASE_URL_UNPOOLED": url}), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert_nothing_of(password, proc.stdout + proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert "percent-encode the user and password" in proc.stderr


@pytest.mark.parametrize("password", RAW_PASSWORDS[:2])
def test_function_answers_misconfigured_and_logs_none_of_the_password(
    app_db: AppDatabase, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://app:{password}@127.0.0.1:{app_db.cluster.port}/{app_db.dbname}?connect_timeout=2"
    database = Database(env={"DATABASE_URL": url})
    with caplog.at_level(logging.INFO):
        response = charge_credits.handle({"org_id": 1, "amount": 1, "idempotency_key": "k"}, database)
    assert response["statusCode"] == 500
    assert "percent-encode" in caplog.text  # the caller gets a fixed message (#31.6), the log what to fix
    assert_nothing_of(password, response["body"] + caplog.text)
    assert database.stats.connects == 0


def test_local_top_refuses_a_raw_password_without_quoting_it() -> None:
    password = RAW_PASSWORDS[1]
    with pytest.raises(TopError) as refused:
        postgres_figures(f"postgresql://app:{password}@127.0.0.1:9/db?connect_timeout=2")
    assert "percent-encode" in str(refused.value)
    assert_nothing_of(password, str(refused.value))
    # A well-formed URL that fails: libpq's words, with nothing of the password.
    with pytest.raises(TopError) as unreachable:
        postgres_figures(f"postgresql://app:{quote(password, safe='')}@127.0.0.1:9/db?connect_timeout=2")
    assert_nothing_of(password, str(unreachable.value))


def test_local_top_console_url_with_a_raw_password_is_refused_unquoted() -> None:
    password = RAW_PASSWORDS[1]
    err = io.StringIO()
    env = {"LIFEGUARD_POOLER_CONSOLE_URL": f"postgresql://stats:{password}@127.0.0.1:9/pgbouncer?connect_timeout=2"}
    assert run_top(top_args("--once"), env=env, out=io.StringIO(), err=err) == 2
    assert "percent-encode" in err.getvalue()
    assert_nothing_of(password, err.getvalue())


# -- the forms a password takes outside a URL (#31.7) ------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("PGPASSWORD=hunter2x psql -h db", "PGPASSWORD=*** psql -h db"),
        ("export PGPASSWORD='a b c' && psql", "export PGPASSWORD=*** && psql"),
        ("host=db sslpassword=k3yp4ss sslmode=verify-full", "host=db sslpassword=*** sslmode=verify-full"),
        ("db_password=hunter2x", "db_password=***"),
        ("DB_PASSWORD = hunter2x;", "DB_PASSWORD = ***"),
        ('{"username": "app", "password": "s3 cr\\"et"}', '{"username": "app", "password": ***}'),
        ('{"username":"app","password":"hunter2x"}', '{"username":"app","password":***}'),
        ("{'username': 'app', 'password': 'p w'}", "{'username': 'app', 'password': ***}"),
        ("password: hunter2x\nuser: app", "password: ***\nuser: app"),
        ('password="three word pass" user=app', "password=*** user=app"),
        ("password='it''s' x", "password=*** x"),
        ('password="never closed and more', "password=***"),
    ],
)
def test_password_keywords_in_every_form_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "FATAL:  password authentication failed for user \"app\"",
        "password_encryption = scram-sha-256",
        "passwords: 3 rotated today",
        "passwordless login is refused",
        "the password is read from the secret; user: app",
        "/etc/passwd: permission denied",
        "sslmode=verify-full sslrootcert=/tmp/ca.pem",
    ],
)
def test_ordinary_text_is_not_masked(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("password", ["Xq7/Zr@Tq Wp3K", "p@ss/w0rd#x?"])
def test_percent_encodings_of_a_known_secret_are_masked_whatever_their_case(password: str) -> None:
    redactor = Redactor(secrets=[password])
    upper = quote(password, safe="")
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), upper)
    mixed = re.sub(r"%([0-9A-F])([0-9A-F])", lambda m: f"%{m.group(1).lower()}{m.group(2)}", upper)
    for form in (upper, lower, mixed):
        assert_no_secret(form, redactor(f"relayed {form} here"))
        assert redactor(f"relayed {form} here") == "relayed *** here"
    # A URL's password, encoded in lower case by another tool.
    url = f"postgresql://app:{upper}@db:5432/app"
    assert redactor_for(url)(f"user info app:{lower} at db") == "user info app:*** at db"


def redactor_for(url: str) -> Redactor:
    return Redactor([url])
