"""The pipeline commands read the program's real outputs: each reader in lifeguard/deploy/outputs.py is fed
the outputs the program exports (under the mocks, for every variant), as ``pulumi stack output --json``
hands them over, and must name the very resources the program created.

A shape change on either side (a name where an ARN is read, a task definition without its revision, a
list turned into a string) fails here, not in the first deploy.
"""

from __future__ import annotations

import json
from typing import Any

from lifeguard.deploy.outputs import MigrationTarget, PoolerRolloutTarget, SmokeTarget
from tests.infra.infra_harness import ProgramRun, unwrap
from tests.infra.test_infra_stack import sg_roles


def _as_pulumi_prints_them(run: ProgramRun) -> dict[str, Any]:
    printed = json.loads(json.dumps({name: unwrap(value) for name, value in run.outputs.items()}))
    assert isinstance(printed, dict)
    return printed


def test_the_migration_step_reads_the_migration_task_the_program_made(every_run: ProgramRun) -> None:
    target = MigrationTarget.from_outputs(_as_pulumi_prints_them(every_run), "the mocked program")
    task = every_run.one("aws:ecs/taskDefinition:TaskDefinition", "migration")
    (container,) = json.loads(task.input("containerDefinitions"))
    cluster = next(c for c in every_run.of_type("aws:ecs/cluster:Cluster") if "migration" in c.name)
    assert target.cluster_arn == cluster.state["arn"]
    assert target.task_definition_arn == task.state["arn"]
    assert target.container_name == container["name"]
    options = container["logConfiguration"]["options"]
    assert (target.log_group_name, target.log_stream_prefix) == (options["awslogs-group"],
                                                                 options["awslogs-stream-prefix"])
    assert [sg_roles(every_run)[group] for group in target.security_group_ids] == ["migration"]
    service = every_run.one("aws:ecs/service:Service")
    # The pooler's private subnets: where the task reaches the database directly.
    assert sorted(target.subnet_ids) == sorted(service.input("networkConfiguration")["subnets"])


def test_the_smoke_step_invokes_the_functions_the_program_made(every_run: ProgramRun) -> None:
    target = SmokeTarget.from_outputs(_as_pulumi_prints_them(every_run), "the mocked program")
    names = {f.input("handler"): f.state["name"] for f in every_run.of_type("aws:lambda/function:Function")}
    assert (target.read_function, target.charge_function) == (
        names["lambdas.read_invoices.handler"], names["lambdas.charge_credits.handler"])


def test_the_rollout_check_watches_the_pooler_service_the_program_made(every_run: ProgramRun) -> None:
    target = PoolerRolloutTarget.from_outputs(_as_pulumi_prints_them(every_run), "the mocked program")
    service = every_run.one("aws:ecs/service:Service")
    task = every_run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")
    clusters = every_run.of_type("aws:ecs/cluster:Cluster")
    cluster = next(c for c in clusters if c.state["arn"] == service.input("cluster"))
    assert (target.cluster_name, target.service_name) == (cluster.state["name"], service.state["name"])
    assert target.task_definition_arn == task.state["arn"] == service.input("taskDefinition")
    assert target.region == "eu-west-1"
