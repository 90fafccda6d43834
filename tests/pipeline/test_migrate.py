"""``lifeguard migrate``: the happy path against moto, and with botocore's Stubber what moto cannot do.

moto's ECS never runs a container and always reports exit code 0, so the non-zero exit, the task
that never starts and the timeout are played by a stubbed ECS client answering as real ECS does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from lifeguard import cli
from lifeguard.deploy import aws
from lifeguard.deploy.ecs_task import EXIT_DID_NOT_RUN, EXIT_TIMED_OUT, EcsTaskError
from lifeguard.deploy.migration import MigrationSettings, run_migration
from lifeguard.deploy.outputs import MigrationTarget
from tests.pipeline.support import CONTAINER, LOG_PREFIX, REGION, FakeClock, MigrationStack, run_with_clock
from tests.secrecy import assert_no_secret

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_logs import CloudWatchLogsClient

SECRET_PASSWORD = "hunter2-Pa55"  # a fake, to prove it is never printed
CLUSTER_ARN = "arn:aws:ecs:eu-west-1:123456789012:cluster/migration-cluster"
TASK_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_ARN = f"arn:aws:ecs:eu-west-1:123456789012:task/migration-cluster/{TASK_ID}"
TARGET = MigrationTarget(
    cluster_arn=CLUSTER_ARN,
    task_definition_arn="arn:aws:ecs:eu-west-1:123456789012:task-definition/migration-dev:3",
    container_name=CONTAINER,
    subnet_ids=("subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"),
    security_group_ids=("sg-0123456789abcdef0",),
    log_group_name="/lifeguard/migration",
    log_stream_prefix=LOG_PREFIX,
)
RUN_TASK_PARAMS = {
    "cluster": CLUSTER_ARN,
    "taskDefinition": TARGET.task_definition_arn,
    "launchType": "FARGATE",
    "count": 1,
    "startedBy": "lifeguard-migrate",
    "propagateTags": "TASK_DEFINITION",
    "networkConfiguration": {"awsvpcConfiguration": {
        "subnets": list(TARGET.subnet_ids),
        "securityGroups": list(TARGET.security_group_ids),
        "assignPublicIp": "DISABLED",
    }},
}
DESCRIBE_PARAMS = {"cluster": CLUSTER_ARN, "tasks": [TASK_ARN]}


def task(status: str, *, exit_code: int | None = None, stop_code: str | None = None,
         stopped_reason: str | None = None, container_reason: str | None = None,
         container_name: str = CONTAINER) -> dict[str, Any]:
    """A task as DescribeTasks shows it."""
    container: dict[str, Any] = {"name": container_name, "lastStatus": status, "taskArn": TASK_ARN}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason is not None:
        container["reason"] = container_reason
    described: dict[str, Any] = {"taskArn": TASK_ARN, "clusterArn": CLUSTER_ARN, "lastStatus": status,
                                 "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
                                 "containers": [container]}
    if stop_code is not None:
        described["stopCode"] = stop_code
    if stopped_reason is not None:
        described["stoppedReason"] = stopped_reason
    return described


class Recorder:
    def __init__(self) -> None:
        self.log_lines: list[str] = []
        self.status: list[str] = []

    def settings(self, clock: FakeClock, **overrides: Any) -> MigrationSettings:
        return MigrationSettings(clock=clock, on_log_line=self.log_lines.append, on_status=self.status.append,
                            **overrides)


@pytest.fixture
def moto_logs(moto_aws: None) -> CloudWatchLogsClient:
    client = boto3.client("logs", region_name=REGION)
    client.create_log_group(logGroupName=TARGET.log_group_name)
    return client


def write_logs(logs: CloudWatchLogsClient, stream: str, *messages: str) -> None:
    existing = logs.describe_log_streams(logGroupName=TARGET.log_group_name, logStreamNamePrefix=stream)
    if not existing["logStreams"]:
        logs.create_log_stream(logGroupName=TARGET.log_group_name, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=TARGET.log_group_name, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)])


# -- the happy path, end to end through the command line against moto -------------------------------


def test_migrate_runs_the_task_follows_its_logs_and_exits_with_its_code(
    migration_stack: MigrationStack, tmp_path: Path, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = migration_stack.outputs
    sent: dict[str, Any] = {}
    # What the container writes, one batch per DescribeTasks: nothing before the first (the stream
    # does not exist yet), then lines while it runs, one of them quoting a URL with a password.
    batches = [
        [],
        ["migrator: database db.internal:5432/app: 3 migration file(s)"],
        [f"driver said: connection to postgresql://app:{SECRET_PASSWORD}@db.internal:5432/app failed once",
         "migrator: 0001_orgs_invoices_charges.sql applied in 12 ms"],
        ["migrator: applied 3 migration(s) in 30 ms; 0 were already applied"],
    ]
    expected_lines = [
        "migrator: database db.internal:5432/app: 3 migration file(s)",
        "driver said: connection to postgresql://app:***@db.internal:5432/app failed once",
        "migrator: 0001_orgs_invoices_charges.sql applied in 12 ms",
        "migrator: applied 3 migration(s) in 30 ms; 0 were already applied",
    ]
    logs = boto3.client("logs", region_name=REGION)

    def container_writes(parsed: dict[str, Any], **_: Any) -> None:
        task_id = parsed["tasks"][0]["taskArn"].rsplit("/", 1)[-1]
        if batches and (batch := batches.pop(0)):
            write_logs(logs, f"{LOG_PREFIX}/{CONTAINER}/{task_id}", *batch)

    real_ecs_client = aws.ecs_client

    def ecs_client(region: str | None) -> ECSClient:
        client = real_ecs_client(region)
        client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.update(params))
        client.meta.events.register("after-call.ecs.DescribeTasks", container_writes)
        assert client.meta.region_name == "eu-west-1"  # from the cluster ARN, not the environment
        return client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    monkeypatch.setattr(aws, "ecs_client", ecs_client)

    code = run_with_clock(["migrate", "--outputs", str(migration_stack.write(tmp_path)), "--started-by", "gha-42-1"],
                          clock)

    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines() == expected_lines
    assert_no_secret(SECRET_PASSWORD, out + err)
    assert sent == {**RUN_TASK_PARAMS, "cluster": outputs["migrationClusterArn"],
                    "taskDefinition": outputs["migrationTaskDefinitionArn"], "startedBy": "gha-42-1",
                    "networkConfiguration": {"awsvpcConfiguration": {
                        "subnets": outputs["migrationSubnetIds"],
                        "securityGroups": outputs["migrationSecurityGroupIds"],
                        "assignPublicIp": "DISABLED"}}}
    ecs = boto3.client("ecs", region_name=REGION)
    listed = ecs.list_tasks(cluster=outputs["migrationClusterArn"], startedBy="gha-42-1")["taskArns"]
    assert len(listed) == 1
    described = ecs.describe_tasks(cluster=outputs["migrationClusterArn"], tasks=listed)["tasks"][0]
    assert described["startedBy"] == "gha-42-1" and described["lastStatus"] == "STOPPED"
    # Each state change is reported once (moto's states after RunTask's RUNNING).
    assert [line.rsplit(" is ", 1)[1] for line in err.splitlines() if " is " in line] == [
        "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    assert "migrations applied: the migration container exited with code 0" in err
    # Four polls with a 5 s wait between them; after STOPPED, the grace period for late log lines
    # (the last line above was written after the STOPPED answer, and was still printed).
    assert clock.sleeps == [5.0, 5.0, 5.0, 3.0]


# -- what moto cannot do: the Stubber answers as real ECS does ---------------------------------------


def test_a_non_zero_exit_fails_with_that_code_and_ecs_reason(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task(
        "STOPPED", exit_code=5, stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited")], "failures": []}, DESCRIBE_PARAMS)
    write_logs(moto_logs, TARGET.log_stream_name(TASK_ID), "migrator: 0004_x.sql failed: syntax error at line 3")
    recorder = Recorder()

    outcome = run_migration(ecs, moto_logs, TARGET, recorder.settings(clock))

    assert outcome.exit_code == 5 and not outcome.ok
    assert "exited with code 5" in outcome.summary
    assert "EssentialContainerExited" in outcome.summary and "Essential container in task exited" in outcome.summary
    assert recorder.log_lines == ["migrator: 0004_x.sql failed: syntax error at line 3"]
    assert [s for s in recorder.status if s.startswith("task ")] == [
        f"task {TASK_ID} is RUNNING", f"task {TASK_ID} is STOPPED"]


@pytest.mark.parametrize(
    ("stop_code", "stopped_reason", "container_reason"),
    [
        # The image is not in ECR (wrong tag, or no route to ECR from the private subnets).
        ("TaskFailedToStart",
         "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/migrator:abc: not found",
         "CannotPullContainerError: pull image manifest has been retried 5 time(s)"),
        # The execution role may not read the DATABASE_URL_UNPOOLED secret.
        ("TaskFailedToStart",
         "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval "
         "failed: unable to retrieve secret from asm: AccessDeniedException",
         None),
    ],
)
def test_a_task_that_never_runs_its_container_fails_with_ecs_reason(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
    stop_code: str, stopped_reason: str, container_reason: str | None,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("PENDING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task(
        "STOPPED", stop_code=stop_code, stopped_reason=stopped_reason, container_reason=container_reason)],
        "failures": []}, DESCRIBE_PARAMS)
    recorder = Recorder()

    outcome = run_migration(ecs, moto_logs, TARGET, recorder.settings(clock))

    assert outcome.exit_code == EXIT_DID_NOT_RUN
    assert "never ran to completion" in outcome.summary
    assert stopped_reason in outcome.summary and f"stopCode {stop_code}" in outcome.summary
    assert recorder.log_lines == []
    # The stream never appeared: the run says which outputs to check instead of staying silent.
    assert any("no log stream migrate/migrator/" in s for s in recorder.status)


def test_run_task_failures_exit_non_zero_through_the_command(
    stubbed_ecs: tuple[ECSClient, Stubber], tmp_path: Path, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [], "failures": [
        {"arn": TARGET.task_definition_arn, "reason": "Capacity is unavailable at this time",
         "detail": "Please try again later or in a different availability zone"}]}, RUN_TASK_PARAMS)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(_outputs_json(), encoding="utf-8")
    monkeypatch.setattr(aws, "ecs_client", lambda region: ecs)

    code = run_with_clock(["migrate", "--outputs", str(outputs)], clock)

    err = capsys.readouterr().err
    assert code == EXIT_DID_NOT_RUN
    assert ("ECS did not start the migration task: Capacity is unavailable at this time "
            "(Please try again later or in a different availability zone)") in err


def test_an_aws_refusal_exits_1_with_its_message(
    stubbed_ecs: tuple[ECSClient, Stubber], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_client_error("run_task", "AccessDeniedException",
                             "User is not authorized to perform: iam:PassRole", http_status_code=400)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(_outputs_json(), encoding="utf-8")
    monkeypatch.setattr(aws, "ecs_client", lambda region: ecs)

    code = cli.main(["migrate", "--outputs", str(outputs)])

    assert code == 1
    assert "AccessDeniedException" in capsys.readouterr().err


def test_timeout_stops_the_task_and_fails(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    # Timeout 12 s, polls every 5 s: checks at 0, 5, 10 and 12 s (the last wait is clamped to what is
    # left), all still RUNNING, then the stop.
    for _ in range(4):
        stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_response("stop_task", {"task": task("STOPPING")}, {
        "cluster": CLUSTER_ARN, "task": TASK_ARN, "reason": "lifeguard migrate timed out after 12 s"})
    recorder = Recorder()

    outcome = run_migration(ecs, moto_logs, TARGET, recorder.settings(clock, timeout=12.0))

    assert outcome.exit_code == EXIT_TIMED_OUT
    assert "did not finish within 12 s and was asked to stop" in outcome.summary
    assert "--timeout" in outcome.summary
    assert clock.sleeps == [5.0, 5.0, 2.0]


def test_interrupt_stops_the_task(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_response("stop_task", {"task": task("STOPPING")}, {
        "cluster": CLUSTER_ARN, "task": TASK_ARN, "reason": "lifeguard migrate was interrupted"})

    class CancelledClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt  # what a CI cancel (SIGINT) does during the wait

    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run_migration(ecs, moto_logs, TARGET, recorder.settings(CancelledClock()))
    assert recorder.status[-1] == f"interrupted: asked ECS to stop task {TASK_ID}"


def test_a_wrong_container_name_is_named(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("STOPPED", exit_code=0, container_name="app")],
                                            "failures": []}, DESCRIBE_PARAMS)

    outcome = run_migration(ecs, moto_logs, TARGET, Recorder().settings(clock))

    assert outcome.exit_code == EXIT_DID_NOT_RUN
    assert "no container named 'migrator' (it has: 'app')" in outcome.summary


MISSING = {"tasks": [], "failures": [{"arn": TASK_ARN, "reason": "MISSING"}]}


def test_a_task_not_yet_visible_is_waited_for(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
) -> None:
    # The ECS API is eventually consistent: right after RunTask, DescribeTasks may not know the task.
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", MISSING, DESCRIBE_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("STOPPED", exit_code=0)], "failures": []},
                         DESCRIBE_PARAMS)
    assert run_migration(ecs, moto_logs, TARGET, Recorder().settings(clock)).exit_code == 0


@pytest.mark.parametrize("seen_first", [True, False])
def test_a_task_ecs_does_not_know_is_an_error(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock, seen_first: bool,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    if seen_first:
        # Known once, then lost: no grace.
        stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
        stubber.add_response("describe_tasks", MISSING, DESCRIBE_PARAMS)
    else:
        # Never known: polls at 0, 5, ... 30 s, then the 30 s grace is over.
        for _ in range(7):
            stubber.add_response("describe_tasks", MISSING, DESCRIBE_PARAMS)
    with pytest.raises(EcsTaskError, match=f"ECS does not know task {TASK_ID}: MISSING"):
        run_migration(ecs, moto_logs, TARGET, Recorder().settings(clock))


def test_a_task_that_cannot_be_stopped_says_so(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    # Timeout 1 s: checks at 0 and 1 s, then the stop, which is refused.
    for _ in range(2):
        stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_client_error("stop_task", "AccessDeniedException", "not authorized to perform: ecs:StopTask")
    recorder = Recorder()

    outcome = run_migration(ecs, moto_logs, TARGET, recorder.settings(clock, timeout=1.0))

    assert outcome.exit_code == EXIT_TIMED_OUT
    assert "could not be stopped: stop it in the ECS console" in outcome.summary
    assert any(s.startswith(f"could not stop task {TASK_ID}:") and "AccessDeniedException" in s
               for s in recorder.status)


def test_unreadable_logs_do_not_stop_the_wait(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    logs = boto3.client("logs", region_name=REGION)
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, RUN_TASK_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("RUNNING")], "failures": []}, DESCRIBE_PARAMS)
    stubber.add_response("describe_tasks", {"tasks": [task("STOPPED", exit_code=0)], "failures": []},
                         DESCRIBE_PARAMS)
    recorder = Recorder()
    with Stubber(logs) as logs_stubber:
        # Refused once; not asked again.
        logs_stubber.add_client_error("get_log_events", "AccessDeniedException",
                                      "not authorized to perform: logs:GetLogEvents")
        outcome = run_migration(ecs, logs, TARGET, recorder.settings(clock))
        logs_stubber.assert_no_pending_responses()

    assert outcome.exit_code == 0
    assert [s for s in recorder.status if "logs" in s] == [
        "cannot read the task's logs; waiting for the task without them: An error occurred "
        "(AccessDeniedException) when calling the GetLogEvents operation: not authorized to perform: "
        "logs:GetLogEvents"]


# -- the command line's own checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--timeout", "0"], "must be a positive, finite number of seconds"),
        (["--timeout", "soon"], "is not a number of seconds"),
        (["--started-by", "github run #4"], "is not a valid startedBy"),
        ([], "one of the arguments --stack --outputs is required"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], expected: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    if argv:
        argv = ["--outputs", str(tmp_path / "o.json"), *argv]
    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate", *argv])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_unusable_outputs_exit_2_before_any_aws_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def no_aws(region: str | None) -> Any:
        raise AssertionError("no AWS client may be created for unusable outputs")

    monkeypatch.setattr(aws, "ecs_client", no_aws)
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"migrationClusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/c"}', encoding="utf-8")
    assert cli.main(["migrate", "--outputs", str(outputs)]) == 2
    err = capsys.readouterr().err
    assert "migrationTaskDefinitionArn is missing" in err and "migrationSubnetIds is missing" in err


def _outputs_json() -> str:
    return json.dumps({
        "migrationClusterArn": TARGET.cluster_arn,
        "migrationTaskDefinitionArn": TARGET.task_definition_arn,
        "migrationContainerName": TARGET.container_name,
        "migrationSubnetIds": list(TARGET.subnet_ids),
        "migrationSecurityGroupIds": list(TARGET.security_group_ids),
        "migrationLogGroupName": TARGET.log_group_name,
        "migrationLogStreamPrefix": TARGET.log_stream_prefix,
    })


# -- another command of the job for this run (#25.4): the override, and the same exit-code gating ------


@pytest.mark.parametrize(
    ("extra", "command", "exit_code"),
    [
        (["--command", "alembic upgrade head"],
         ["python3", "-m", "migrator", "run", "--", "alembic", "upgrade", "head"], 0),
        # A failing migration in the user's tool: the tool's code, and the step fails with it.
        (["--command", "node-pg-migrate up -m 'db/migrations dir'"],
         ["python3", "-m", "migrator", "run", "--", "node-pg-migrate", "up", "-m", "db/migrations dir"], 1),
        (["--status"], ["python3", "-m", "migrator", "status"], 0),
        (["--dry-run"], ["python3", "-m", "migrator", "--dry-run"], 6),
    ],
)
def test_another_command_of_the_job_runs_with_the_same_gating(
    stubbed_ecs: tuple[ECSClient, Stubber], moto_logs: CloudWatchLogsClient, tmp_path: Path, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    extra: list[str], command: list[str], exit_code: int,
) -> None:
    ecs, stubber = stubbed_ecs
    # The override names the container and replaces only its command: the task definition's
    # environment, secrets and roles stay (Stubber checks the parameters exactly).
    params = {**RUN_TASK_PARAMS, "overrides": {"containerOverrides": [{"name": CONTAINER, "command": command}]}}
    stubber.add_response("run_task", {"tasks": [task("PROVISIONING")], "failures": []}, params)
    stubber.add_response("describe_tasks", {"tasks": [task(
        "STOPPED", exit_code=exit_code, stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited")], "failures": []}, DESCRIBE_PARAMS)
    write_logs(moto_logs, TARGET.log_stream_name(TASK_ID), "migrator: the command exited with 0")
    monkeypatch.setattr(aws, "ecs_client", lambda region: ecs)
    monkeypatch.setattr(aws, "logs_client", lambda region: moto_logs)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(_outputs_json(), encoding="utf-8")

    code = run_with_clock(["migrate", "--outputs", str(outputs), *extra], clock)

    out, err = capsys.readouterr()
    assert code == exit_code
    assert out.splitlines() == ["migrator: the command exited with 0"]
    verdict = "migrations applied: " if exit_code == 0 else "migration FAILED: "
    assert f"{verdict}the migration container exited with code {exit_code}" in err


def test_one_command_per_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate", "--outputs", str(tmp_path / "o.json"), "--status", "--command", "alembic current"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["migrate", "--outputs", str(tmp_path / "o.json"), "--command", "alembic 'unclosed"])
    assert "cannot split" in capsys.readouterr().err
