"""Loading the stack outputs: from the Pulumi CLI, a file or stdin, with clear errors for each way it fails."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from lifeguard import cli
from lifeguard.deploy.outputs import (
    MigrationTarget,
    OutputsError,
    SmokeTarget,
    load_outputs_file,
    load_stack_outputs,
    parse_outputs,
)

CLUSTER = "arn:aws:ecs:eu-west-1:123456789012:cluster/migration-cluster"
GOOD: dict[str, Any] = {
    "migrationClusterArn": CLUSTER,
    "migrationTaskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/migration-dev:3",
    "migrationContainerName": "migrator",
    "migrationSubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"],
    "migrationSecurityGroupIds": ["sg-0123456789abcdef0"],
    "migrationLogGroupName": "/lifeguard/migration",
    "migrationLogStreamPrefix": "migrate",
    "readInvoicesFunctionName": "read-invoices-1a2b",
    "chargeCreditsFunctionName": "charge-credits-3c4d",
    "directSecretArn": "[secret]",
}
# Stands in for a value that must never be echoed back in an error.
SENSITIVE = "postgresql://app:hunter2@db.internal:5432/app"


def fake_pulumi(directory: Path, script: str) -> Path:
    """A `pulumi` executable on PATH that runs ``script`` (bash) and records its arguments."""
    path = directory / "pulumi"
    path.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{directory}/argv"\n{script}\n', encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_stack_outputs_come_from_pulumi_stack_output_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps(GOOD), encoding="utf-8")
    fake_pulumi(tmp_path, f'cat "{tmp_path}/outputs.json"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    outputs = load_stack_outputs("acme/lifeguard/prod")
    assert outputs == GOOD
    assert (tmp_path / "argv").read_text().split() == ["stack", "output", "--json", "--stack", "acme/lifeguard/prod"]
    target = MigrationTarget.from_outputs(outputs, "stack 'prod'")
    assert target.subnet_ids == tuple(GOOD["migrationSubnetIds"])
    assert target.region == "eu-west-1"
    assert target.log_stream_name("9f8e7d") == "migrate/migrator/9f8e7d"
    assert SmokeTarget.from_outputs(outputs, "stack 'prod'") == SmokeTarget("read-invoices-1a2b", "charge-credits-3c4d")


def test_pulumi_not_installed_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no pulumi anywhere
    with pytest.raises(OutputsError) as caught:
        load_stack_outputs("dev")
    message = str(caught.value)
    assert "Pulumi CLI" in message and "not installed" in message
    assert "--outputs" in message


def test_pulumi_failure_is_reported_with_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pulumi(tmp_path, "echo \"error: no stack named 'nope' found\" >&2; exit 255")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(OutputsError, match="exit code 255: error: no stack named 'nope' found"):
        load_stack_outputs("nope")


def test_a_hung_pulumi_is_not_waited_for_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pulumi(tmp_path, "exec sleep 30")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(OutputsError, match=r"did not finish within 0\.5 s"):
        load_stack_outputs("dev", timeout=0.5)


def test_malformed_json_gives_the_position_not_the_content() -> None:
    text = '{"migrationClusterArn": "' + SENSITIVE + '",\n  "x": }'
    with pytest.raises(OutputsError) as caught:
        parse_outputs(text, "file 'o.json'")
    message = str(caught.value)
    assert "not valid JSON (line 2, column" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "are empty"),
        ("[1, 2]", "must be a JSON object of output names, not a list"),
        ('"just a string"', "not a string"),
    ],
)
def test_outputs_that_are_not_an_object_are_refused(text: str, expected: str) -> None:
    with pytest.raises(OutputsError, match=expected):
        parse_outputs(text, "standard input")


def test_every_missing_or_wrong_output_is_named_at_once() -> None:
    outputs = dict(GOOD)
    del outputs["migrationTaskDefinitionArn"]
    outputs["migrationSubnetIds"] = []
    outputs["migrationSecurityGroupIds"] = ["sg-1", 7]
    outputs["migrationContainerName"] = "   "
    outputs["migrationLogGroupName"] = "[secret]"
    outputs["migrationClusterArn"] = SENSITIVE
    with pytest.raises(OutputsError) as caught:
        MigrationTarget.from_outputs(outputs, "stack 'dev'")
    message = str(caught.value)
    for expected in (
        "migrationTaskDefinitionArn is missing",
        "migrationSubnetIds must be a non-empty list of strings, not an empty list",
        "migrationSecurityGroupIds must be a non-empty list of strings; it holds a number",
        "migrationContainerName must be a non-empty string, not an empty string",
        "migrationLogGroupName is a secret output",
        "migrationClusterArn must be an ECS cluster ARN",
        "`pulumi up`",
    ):
        assert expected in message
    assert "hunter2" not in message


def test_smoke_needs_only_the_function_names() -> None:
    with pytest.raises(OutputsError, match="chargeCreditsFunctionName is missing") as caught:
        SmokeTarget.from_outputs({"readInvoicesFunctionName": "r"}, "stack 'dev'")
    assert "readInvoicesFunctionName" not in str(caught.value)


def test_outputs_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    assert load_outputs_file(str(path)) == GOOD
    assert load_outputs_file("-", stdin=io.StringIO(json.dumps(GOOD))) == GOOD
    with pytest.raises(OutputsError, match="does not exist; save it with `pulumi stack output --json >"):
        load_outputs_file(str(tmp_path / "missing.json"))
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(OutputsError, match="cannot read outputs file"):
        load_outputs_file(str(path))


@pytest.mark.parametrize("command", ["migrate", "smoke"])
def test_commands_report_a_missing_pulumi_cli_and_exit_2(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main([command, "--stack", "dev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lifeguard {command}: error: the Pulumi CLI ('pulumi') is not installed")


def test_commands_read_outputs_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Outputs without the functions: smoke stops with exit 2 before calling AWS.
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"migrationContainerName": "migrator"})))
    assert cli.main(["smoke", "--outputs", "-"]) == 2
    err = capsys.readouterr().err
    assert "the outputs from standard input are not usable" in err
    assert "readInvoicesFunctionName is missing" in err


def test_smoke_on_a_stack_without_the_sample_functions_says_so() -> None:
    """``sampleFunctions: false`` (the stack exports its client but no sample function): the smoke test has
    nothing to call, and says why, rather than asking to deploy lifeguard's program."""
    outputs = {key: value for key, value in GOOD.items() if not key.endswith("FunctionName")}
    outputs["clientSecurityGroupId"] = "sg-0123456789abcdef1"
    with pytest.raises(OutputsError) as caught:
        SmokeTarget.from_outputs(outputs, "stack 'prod'")
    message = str(caught.value)
    assert "sampleFunctions" in message and "no sample functions" in message
    assert "readInvoicesFunctionName is missing" not in message
