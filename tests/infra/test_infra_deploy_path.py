"""Issue #27: what a real account would hit on the deploy path, checked under the mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.infra_harness import ProgramRun, StrictMocks, example_stack_config, run_program


@pytest.fixture(scope="module")
def new_account_run(build_dir: Path) -> ProgramRun:
    """The example stack in a brand-new account: no ``AWSServiceRoleForECS`` yet."""
    return run_program(example_stack_config(), build_dir, mocks=StrictMocks(ecs_service_linked_role=False))


# -- #27.2: CreateCluster races the stack for ECS's service-linked role -------------------------


def test_every_ecs_cluster_waits_for_the_service_linked_role(new_account_run: ProgramRun) -> None:
    # CreateCluster creates AWSServiceRoleForECS itself when it is missing; a cluster created first
    # makes the stack's own create fail ("has been taken in this account").
    role = new_account_run.one("aws:iam/serviceLinkedRole:ServiceLinkedRole")
    clusters = new_account_run.of_type("aws:ecs/cluster:Cluster")
    assert {cluster.name for cluster in clusters} == {"pooler-cluster", "migration-cluster"}
    for cluster in clusters:
        assert role.urn in new_account_run.dependencies(cluster), f"{cluster.name} does not wait for {role.name}"


# -- #27.6: the CA layer's name ------------------------------------------------------------------


def test_existing_stacks_keep_their_ca_layer_name(example_run: ProgramRun) -> None:
    # The layer's old name, `pooler-ca-<stack>`, was valid wherever a stack exists: keeping it keeps
    # poolerCaLayerArn (no new layer version under the users' own functions).
    layer = example_run.one("aws:lambda/layerVersion:LayerVersion")
    assert layer.input("layerName").startswith("lifeguard-dev-pooler-ca-")
    assert "layerName" in layer.ignore_changes
