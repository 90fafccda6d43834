"""Every field of the task definitions the program renders has a Docker translation (no engine needed)."""

from __future__ import annotations

import pytest

from lifeguard.stack.ecs_run import plan_task
from tests.images.support import RenderedStack


@pytest.mark.parametrize("family", ["pooler", "migration"])
def test_the_rendered_task_definition_translates_field_by_field(rendered: RenderedStack, family: str) -> None:
    # The migration task runs as a task role: its calls go to the stand-in these variables name.
    role = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing"}
    plans = plan_task(rendered.task(family), images=lambda uri: "image", secrets=rendered.secrets,
                      prefix="t", hosts={rendered.rds_address: "127.0.0.1"}, machine_architecture="amd64",
                      task_role=role)
    definitions = rendered.task(family)["containerDefinitions"]
    assert [plan.name for plan in plans] == [c["name"] for c in definitions]
    for plan, container in zip(plans, definitions, strict=True):
        # Every secret is injected, by the name ECS gives it, from the stand-in's value.
        assert {s["name"] for s in container.get("secrets", [])} <= set(plan.env)
        assert plan.stop_timeout_s == container.get("stopTimeout")
        # A task role's stand-in reaches exactly the tasks that have a role.
        assert (role.items() <= plan.env.items()) == bool(rendered.task(family).get("taskRoleArn"))
