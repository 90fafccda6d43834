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


# -- #27.7: `pulumi destroy` never stops half-way ------------------------------------------------

PROTECTED = ("aws:rds/instance:Instance", "aws:lb/loadBalancer:LoadBalancer")


@pytest.fixture(scope="module")
def production_run(build_dir: Path) -> ProgramRun:
    """The defaults (a production stack: deletion protection on)."""
    return run_program({"aws:region": "eu-west-1"}, build_dir, stack="prod")


@pytest.fixture(scope="module")
def unprotected_production_run(build_dir: Path) -> ProgramRun:
    """A production stack after the documented first teardown step (deletionProtection false, `up`)."""
    return run_program({"aws:region": "eu-west-1", "deletionProtection": "false"}, build_dir, stack="prod")


def test_a_protected_stack_refuses_destroy_before_deleting_anything(production_run: ProgramRun) -> None:
    # AWS's deletion protection alone fails the destroy at the database, after everything that
    # depends on it is gone; Pulumi's `protect` fails it while planning, before the first delete.
    for type_ in PROTECTED:
        resource = production_run.one(type_)
        assert resource.protect, f"{resource.name} is not protected"
    assert production_run.one("aws:rds/instance:Instance").input("deletionProtection") is True
    assert {r.name for r in production_run.resources if r.protect} == {
        production_run.one(type_).name for type_ in PROTECTED}
    # Nothing will reach the repositories, so they may keep their images.
    assert {r.input("forceDelete") for r in production_run.of_type("aws:ecr/repository:Repository")} == {False}


def test_an_unprotected_stack_destroys_its_repositories_with_their_images(
    unprotected_production_run: ProgramRun, example_run: ProgramRun
) -> None:
    # Images are never deleted by the stack (pushed on every `up`): a repository that refuses to go
    # stopped `pulumi destroy` of a production stack after its database was already deleted.
    for run in (unprotected_production_run, example_run):
        assert not any(r.protect for r in run.resources)
        repositories = run.of_type("aws:ecr/repository:Repository")
        assert len(repositories) == 2
        assert {r.input("forceDelete") for r in repositories} == {True}
