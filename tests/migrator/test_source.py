"""Where the URL comes from (environment, Secrets Manager through moto) and keeping it secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from migrator.cli import main
from migrator.errors import ExitCode, MigratorConfigError, Unavailable
from migrator.source import describe_target, resolve_url
from redaction import Redactor
from tests.migrator.support import SAMPLE_FILES, assert_no_secret, recorded_versions, secrets_of
from tests.support import AppDatabase

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def create_secret(name: str, value: str) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.create_secret(Name=name, SecretString=value)["ARN"]


def test_direct_url_wins_and_database_url_is_never_a_fallback() -> None:
    assert resolve_url({"DATABASE_URL_UNPOOLED": " postgresql://a/b ", "DATABASE_URL": "x"}).url == "postgresql://a/b"
    with pytest.raises(MigratorConfigError, match="DATABASE_URL is set, but the migrator never uses it"):
        resolve_url({"DATABASE_URL": "postgresql://pooled/db"})
    with pytest.raises(MigratorConfigError, match="no database URL: set DATABASE_URL_UNPOOLED"):
        resolve_url({"DATABASE_URL_UNPOOLED": "  "})


def test_secret_arn_path_end_to_end(
    aws: None, app_db: AppDatabase, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = create_secret("lifeguard/direct-url", app_db.direct_url)
    environ = {"DATABASE_URL_UNPOOLED_SECRET_ARN": arn, "DATABASE_URL": "postgresql://pooled:pw@nlb:6432/db"}

    assert main(["--migrations-dir", str(sample_dir)], environ) == ExitCode.OK
    assert main(["status", "--migrations-dir", str(sample_dir)], environ) == ExitCode.OK

    out, err = capsys.readouterr()
    assert f"direct URL from secret {arn}" in err
    assert out.count("applied  ") == len(SAMPLE_FILES)
    assert_no_secret(out + err, secrets_of(app_db))
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]


def test_secret_problems_are_clear_and_never_echo_the_value(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_url = '{"password": "hunter2-Secret"}'
    arn = create_secret("lifeguard/json", not_a_url)
    assert main(["status"], {"DATABASE_URL_UNPOOLED_SECRET_ARN": arn}) == ExitCode.CONFIG
    missing = arn.replace("lifeguard/json", "lifeguard/absent")
    assert main(["status"], {"DATABASE_URL_UNPOOLED_SECRET_ARN": missing}) == ExitCode.UNAVAILABLE

    _, err = capsys.readouterr()
    assert "does not hold a postgresql:// URL" in err
    assert "ResourceNotFoundException" in err and "secretsmanager:GetSecretValue" in err
    assert_no_secret(err, [not_a_url, "hunter2-Secret"])

    with pytest.raises(Unavailable):
        resolve_url({"DATABASE_URL_UNPOOLED_SECRET_ARN": missing})


def test_redactor_masks_every_form_of_the_password() -> None:
    password = "p@ss:w%rd/#x"
    url = f"postgresql://user:{quote(password, safe='')}@db.internal:5432/app?sslmode=verify-full"
    redact = Redactor([url])
    text = f"url={url} raw={password} encoded={quote(password, safe='')} path-encoded={quote(password)}"
    masked = redact(text)
    assert_no_secret(masked, [password, quote(password, safe=""), quote(password), url])
    assert masked.count("***") == 4

    keyword_form = Redactor(["host=db password='k3y w0rd' dbname=app"])
    assert keyword_form("auth failed for k3y w0rd") == "auth failed for ***"


def test_redactor_filters_log_records(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://user:Sup3rSecret@db:5432/app"
    logger = logging.getLogger("tests.migrator.redaction")
    logger.addFilter(Redactor([url]))
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting with %s", url)
    assert caplog.messages == ["connecting with ***"]


def test_describe_target_shows_no_credentials() -> None:
    url = "postgresql://user:Sup3rSecret@db.internal:6543/app?sslmode=require"
    assert describe_target(url) == "db.internal:6543/app"
    assert describe_target("postgresql://user:pw@db.internal/app") == "db.internal:5432/app"
