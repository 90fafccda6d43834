"""The migration job records the password rotation Postgres holds (SSM through moto, a real Postgres): after
a successful run only, the rotation it was given, and a failed write fails the run (docs/roles.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from migrator.cli import main
from migrator.contract import APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, ROTATION_ENV, ROTATION_PARAMETER_ENV
from migrator.errors import ExitCode, MigratorConfigError, Unavailable
from migrator.roles import AppRole
from migrator.rotation import RotationRecord, record_rotation, rotation_record_from_env
from tests.migrator.support import assert_no_secret, recorded_versions, secrets_of, write_migrations
from tests.support import AppDatabase

REGION = "eu-west-1"
PARAMETER = "/lifeguard/lifeguard-dev-8ce48526/app-password-rotation"


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's SSM with the parameter as the stack creates it (the rotation DATABASE_URL uses, 0)."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)  # as ECS sets AWS_REGION in the task
    with mock_aws():
        client = boto3.client("ssm", region_name=REGION)
        client.put_parameter(Name=PARAMETER, Value="0", Type="String")
        yield client


def recorded(client: Any, name: str = PARAMETER) -> str:
    return str(client.get_parameter(Name=name)["Parameter"]["Value"])


def job_env(db: AppDatabase, rotation: str = "3", parameter: str = PARAMETER) -> dict[str, str]:
    return {"DATABASE_URL_UNPOOLED": db.direct_url, APP_ROLE_ENV: db.user, APP_ROLE_VERIFIER_ENV: db.verifier,
            ROTATION_PARAMETER_ENV: parameter, ROTATION_ENV: rotation}


def test_a_successful_run_records_its_rotation(
    ssm: Any, app_db: AppDatabase, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--migrations-dir", str(sample_dir)], job_env(app_db)) == ExitCode.OK
    assert recorded(ssm) == "3"
    err = capsys.readouterr().err
    assert f"recorded in {PARAMETER}: Postgres holds password rotation 3's verifiers" in err
    assert_no_secret(err, [*secrets_of(app_db), app_db.verifier])


def test_a_failed_run_records_nothing(ssm: Any, app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_bad.sql": "SELECT * FROM no_such_table;\n"})
    assert main(["--migrations-dir", str(directory)], job_env(app_db)) == ExitCode.MIGRATION_FAILED
    assert recorded(ssm) == "0"


def test_a_dry_run_records_nothing(ssm: Any, app_db: AppDatabase, sample_dir: Path) -> None:
    assert main(["--migrations-dir", str(sample_dir), "--dry-run"], job_env(app_db)) == ExitCode.OK
    assert recorded(ssm) == "0"


def test_a_failed_write_fails_the_run_clearly(
    ssm: Any, app_db: AppDatabase, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # AWS refuses the write (here: a reserved name, AccessDeniedException, as for a role without the grant).
    code = main(["--migrations-dir", str(sample_dir)], job_env(app_db, parameter="/aws/not-ours"))
    assert code == ExitCode.UNAVAILABLE  # the pipeline goes red: no switch on an unknown state
    err = capsys.readouterr().err
    assert "recording password rotation 3 in SSM parameter /aws/not-ours failed (AccessDeniedException)" in err
    assert "ssm:PutParameter" in err and "run the migration job again" in err
    assert_no_secret(err, [*secrets_of(app_db), app_db.verifier])
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]  # the work itself was done and committed
    assert recorded(ssm) == "0"


def test_the_wrapper_records_only_after_the_command_succeeded(ssm: Any, app_db: AppDatabase) -> None:
    failing = ["run", "--", sys.executable, "-c", "raise SystemExit(3)"]
    assert main(failing, job_env(app_db, rotation="5")) == 3
    assert recorded(ssm) == "0"
    assert main(["run", "--", sys.executable, "-c", "pass"], job_env(app_db, rotation="5")) == ExitCode.OK
    assert recorded(ssm) == "5"


@pytest.mark.parametrize(("environ", "message"), [
    ({ROTATION_PARAMETER_ENV: PARAMETER}, f"{ROTATION_ENV} is not set"),
    ({ROTATION_ENV: "1"}, f"{ROTATION_PARAMETER_ENV} is not set"),
    ({ROTATION_PARAMETER_ENV: PARAMETER, ROTATION_ENV: "one"}, "must be a whole number"),
    ({ROTATION_PARAMETER_ENV: PARAMETER, ROTATION_ENV: "-1"}, "must be a whole number"),
])
def test_a_bad_record_config_is_refused(environ: dict[str, str], message: str) -> None:
    role = AppRole("app", "SCRAM-SHA-256$16:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "=")
    with pytest.raises(MigratorConfigError, match=message):
        rotation_record_from_env(environ, role)


def test_a_record_without_the_roles_is_refused_before_anything_runs(
    ssm: Any, app_db: AppDatabase, sample_dir: Path
) -> None:
    environ = {k: v for k, v in job_env(app_db).items() if k not in (APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV)}
    assert main(["--migrations-dir", str(sample_dir)], environ) == ExitCode.CONFIG
    assert recorded_versions(app_db) == []
    assert recorded(ssm) == "0"
    assert rotation_record_from_env({}, None) is None


def test_an_access_denied_answer_is_reported_by_its_code() -> None:
    client = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("put_parameter", "AccessDeniedException", "not authorized to perform ssm:PutParameter",
                              expected_params={"Name": PARAMETER, "Value": "7", "Type": "String", "Overwrite": True})
        with pytest.raises(Unavailable, match=r"rotation 7 in SSM parameter .* failed \(AccessDeniedException\)"):
            record_rotation(RotationRecord(PARAMETER, 7), client)
        stub.assert_no_pending_responses()
