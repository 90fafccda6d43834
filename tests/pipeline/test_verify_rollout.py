"""``lifeguard verify-rollout``: ECS's answers played by botocore's Stubber, as real ECS gives them.

moto cannot roll a deployment back, so the circuit breaker's endings (rolled back to the old task
definition, a FAILED rollout) and a rollout still in progress are stubbed. The Stubber checks each
request and response against ECS's own API model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber

from lifeguard.deploy import aws
from lifeguard.deploy.ecs_task import EXIT_TIMED_OUT
from lifeguard.deploy.outputs import OutputsError, PoolerRolloutTarget
from lifeguard.deploy.rollout import RolloutCheck, RolloutError, verify_rollout
from tests.pipeline.support import REGION, FakeClock, run_with_clock

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

ACCOUNT = "123456789012"
CLUSTER = "lifeguard-prod-pooler"
SERVICE = "lifeguard-prod-pgbouncer"
OLD_TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/lifeguard-pooler-prod:6"
NEW_TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/lifeguard-pooler-prod:7"
OUTPUTS = {"poolerClusterName": CLUSTER, "poolerServiceName": SERVICE, "poolerTaskDefinitionArn": NEW_TD}
TARGET = PoolerRolloutTarget(cluster_name=CLUSTER, service_name=SERVICE, task_definition_arn=NEW_TD)
DESCRIBE_PARAMS = {"cluster": CLUSTER, "services": [SERVICE]}
CIRCUIT_BREAKER = "ECS deployment circuit breaker: task failed to start."
ROLLING_BACK = "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1111111111111111111."


def deployment(
    status: str, task_definition: str, rollout: str | None, *, reason: str = "", running: int = 2, number: int = 1,
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": f"ecs-svc/{number:019d}",
        "status": status,
        "taskDefinition": task_definition,
        "desiredCount": 2,
        "pendingCount": 2 - running,
        "runningCount": running,
        "failedTasks": 0,
        "launchType": "FARGATE",
        "createdAt": datetime(2026, 12, 1, 22, 0, tzinfo=UTC),
        "updatedAt": datetime(2026, 12, 1, 22, 5, tzinfo=UTC),
    }
    if rollout is not None:
        answer["rolloutState"] = rollout
    if reason:
        answer["rolloutStateReason"] = reason
    return answer


def service(*deployments: dict[str, Any], status: str = "ACTIVE") -> dict[str, Any]:
    return {"services": [{
        "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}",
        "serviceName": SERVICE,
        "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
        "status": status,
        "desiredCount": 2,
        "runningCount": 2,
        "deployments": list(deployments),
    }], "failures": []}


COMPLETED = service(deployment("PRIMARY", NEW_TD, "COMPLETED", reason="ECS deployment ecs-svc/2 completed.", number=2))
IN_PROGRESS = service(
    deployment("PRIMARY", NEW_TD, "IN_PROGRESS", running=1, number=2),
    deployment("ACTIVE", OLD_TD, "COMPLETED", running=1, number=1),
)
# The circuit breaker's rollback: a new PRIMARY on the old definition; the failed one is drained.
ROLLED_BACK = service(
    deployment("PRIMARY", OLD_TD, "COMPLETED", reason=ROLLING_BACK, number=3),
    deployment("ACTIVE", NEW_TD, "FAILED", reason=CIRCUIT_BREAKER, running=0, number=2),
)
ROLLED_BACK_AND_DRAINED = service(deployment("PRIMARY", OLD_TD, "COMPLETED", reason=ROLLING_BACK, number=3))
# The circuit breaker without rollback: the new definition stays PRIMARY, FAILED.
FAILED = service(deployment("PRIMARY", NEW_TD, "FAILED", reason=CIRCUIT_BREAKER, running=0, number=2))


def answers(stubber: Stubber, *responses: dict[str, Any]) -> None:
    for response in responses:
        stubber.add_response("describe_services", response, DESCRIBE_PARAMS)


def outputs_file(directory: Path, outputs: dict[str, Any]) -> Path:
    path = directory / "outputs.json"
    path.write_text(json.dumps(outputs), encoding="utf-8")
    return path


def run_command(
    ecs: ECSClient, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str,
) -> tuple[int, list[str | None]]:
    """``lifeguard verify-rollout --outputs FILE``, with the stubbed client; the exit code and the regions asked for."""
    regions: list[str | None] = []

    def ecs_client(region: str | None) -> ECSClient:
        regions.append(region)
        return ecs

    monkeypatch.setattr(aws, "ecs_client", ecs_client)
    path = outputs_file(tmp_path, OUTPUTS)
    return run_with_clock(["verify-rollout", "--outputs", str(path), *extra], clock), regions


def test_a_completed_rollout_of_the_stacks_definition_passes(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    answers(stubber, COMPLETED)
    code, regions = run_command(ecs, clock, tmp_path, monkeypatch)
    assert code == 0
    # The region comes from the task definition's ARN, like the service's.
    assert regions == [REGION]
    assert clock.sleeps == []
    err = capsys.readouterr().err
    assert f"rollout verified: service {SERVICE} runs {NEW_TD}: deployment COMPLETED, 2 of 2 tasks running" in err


@pytest.mark.parametrize("answer", [ROLLED_BACK, ROLLED_BACK_AND_DRAINED], ids=["failed-deployment-listed", "drained"])
def test_a_rolled_back_update_fails_at_once(
    answer: dict[str, Any], stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # What `pulumi up` reports as success: the service is steady, on the old task definition.
    ecs, stubber = stubbed_ecs
    answers(stubber, answer)
    code, _ = run_command(ecs, clock, tmp_path, monkeypatch)
    assert code == 1
    assert clock.sleeps == []
    err = capsys.readouterr().err
    assert "rollout FAILED" in err and "rolled back" in err
    assert f"runs {OLD_TD} (PRIMARY, COMPLETED: {ROLLING_BACK}), not the stack's {NEW_TD}" in err
    if answer is ROLLED_BACK:
        assert f"its deployment is FAILED: {CIRCUIT_BREAKER}" in err
    else:
        assert "no deployment of it is left" in err


def test_a_failed_rollout_of_the_stacks_definition_fails(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    answers(stubber, FAILED)
    code, _ = run_command(ecs, clock, tmp_path, monkeypatch)
    assert code == 1
    assert f"deployment of {NEW_TD} FAILED: {CIRCUIT_BREAKER} (0 of 2 tasks running)" in capsys.readouterr().err


def test_a_rollout_in_progress_is_waited_for_until_the_timeout(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    # 25 s at 10 s a poll: asked at 0, 10, 20 and 25 s, then it gives up.
    answers(stubber, *[IN_PROGRESS] * 4)
    code, _ = run_command(ecs, clock, tmp_path, monkeypatch, "--timeout", "25", "--poll-interval", "10")
    assert code == EXIT_TIMED_OUT
    assert clock.sleeps == [10, 10, 5]
    err = capsys.readouterr().err
    # Progress is printed once, not once per poll.
    assert err.count("is IN_PROGRESS: 1 of 2 tasks running, 1 older deployment still active") == 2
    assert "rollout FAILED: still not COMPLETED after 25 s; last seen:" in err


@pytest.mark.parametrize(
    ("final", "expected"), [(COMPLETED, 0), (ROLLED_BACK, 1)], ids=["then-completed", "then-rolled-back"]
)
def test_a_rollout_in_progress_ends_as_ecs_settles_it(
    final: dict[str, Any], expected: int, stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    answers(stubber, IN_PROGRESS, IN_PROGRESS, final)
    statuses: list[str] = []
    outcome = verify_rollout(ecs, TARGET, RolloutCheck(timeout=600, poll_interval=10, clock=clock,
                                                       on_status=statuses.append))
    assert outcome.exit_code == expected
    assert clock.sleeps == [10, 10]
    assert len(statuses) == 1 and "IN_PROGRESS" in statuses[0]


def test_a_service_ecs_does_not_know_is_an_error(stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_response("describe_services", {"services": [], "failures": [
        {"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}", "reason": "MISSING"},
    ]}, DESCRIBE_PARAMS)
    with pytest.raises(RolloutError, match=f"ECS does not know service '{SERVICE}' in cluster '{CLUSTER}': MISSING"):
        verify_rollout(ecs, TARGET, RolloutCheck(clock=clock))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (service(deployment("PRIMARY", NEW_TD, "COMPLETED"), status="DRAINING"), "is DRAINING, not ACTIVE"),
        (service(deployment("PRIMARY", NEW_TD, None)), "reports no rolloutState"),
        (service(deployment("ACTIVE", NEW_TD, "COMPLETED")), "has 0 PRIMARY deployments"),
    ],
    ids=["draining", "no-rollout-state", "no-primary"],
)
def test_a_service_that_cannot_be_judged_fails(
    answer: dict[str, Any], expected: str, stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock,
) -> None:
    ecs, stubber = stubbed_ecs
    answers(stubber, answer)
    outcome = verify_rollout(ecs, TARGET, RolloutCheck(clock=clock))
    assert outcome.exit_code == 1 and expected in outcome.summary


def test_an_aws_refusal_exits_1_with_its_message(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ecs, stubber = stubbed_ecs
    stubber.add_client_error("describe_services", "AccessDeniedException", "not authorized to ecs:DescribeServices")
    code, _ = run_command(ecs, clock, tmp_path, monkeypatch)
    assert code == 1
    assert "AccessDeniedException" in capsys.readouterr().err


def test_region_flag_wins_over_the_arns(
    stubbed_ecs: tuple[ECSClient, Stubber], clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ecs, stubber = stubbed_ecs
    answers(stubber, COMPLETED)
    code, regions = run_command(ecs, clock, tmp_path, monkeypatch, "--region", "us-east-2")
    assert (code, regions) == (0, ["us-east-2"])


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({k: v for k, v in OUTPUTS.items() if k != "poolerTaskDefinitionArn"}, "poolerTaskDefinitionArn is missing"),
        ({**OUTPUTS, "poolerTaskDefinitionArn": NEW_TD.rsplit(":", 1)[0]}, "with its revision"),
        ({**OUTPUTS, "poolerServiceName": "[secret]"}, "poolerServiceName is a secret output"),
    ],
    ids=["missing", "no-revision", "secret"],
)
def test_unusable_outputs_exit_2_before_any_aws_call(
    outputs: dict[str, Any], expected: str, clock: FakeClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def no_aws(region: str | None) -> ECSClient:
        raise AssertionError("no AWS call may happen with unusable outputs")

    monkeypatch.setattr(aws, "ecs_client", no_aws)
    assert run_with_clock(["verify-rollout", "--outputs", str(outputs_file(tmp_path, outputs))], clock) == 2
    assert expected in capsys.readouterr().err


def test_the_target_reads_the_outputs_the_infra_program_exports() -> None:
    assert PoolerRolloutTarget.from_outputs(OUTPUTS, "test") == TARGET
    assert TARGET.region == REGION
    with pytest.raises(OutputsError, match="poolerClusterName is missing"):
        PoolerRolloutTarget.from_outputs({"poolerServiceName": SERVICE, "poolerTaskDefinitionArn": NEW_TD}, "test")
