"""Every field of the task definitions the program renders has a Docker translation (no engine needed)."""

from __future__ import annotations

import pytest

from lifeguard.stack.ecs_run import plan_task
from tests.images.support import RenderedStack


@pytest.mark.parametrize("family", ["pooler", "migration"])
def test_the_rendered_task_definition_translates_field_by_field(rendered: RenderedStack, family: str) -> None:
    plans = plan_task(rendered.task(family), images=lambda uri: "image", secrets=rendered.secrets,
                      prefix="t", hosts={rendered.rds_address: "127.0.0.1"}, machine_architecture="amd64")
    definitions = rendered.task(family)["containerDefinitions"]
    assert [plan.name for plan in plans] == [c["name"] for c in definitions]
    for plan, container in zip(plans, definitions, strict=True):
        # Every secret is injected, by the name ECS gives it, from the stand-in's value.
        assert {s["name"] for s in container.get("secrets", [])} <= set(plan.env)
        assert plan.stop_timeout_s == container.get("stopTimeout")
