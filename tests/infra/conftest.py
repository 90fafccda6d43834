"""Shared fixtures for the Pulumi program tests: one wheel cache, one run of each stack variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.infra_harness import ProgramRun
from tests.infra.variants import VARIANTS, run_variant


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory per session: Linux wheels are downloaded from PyPI once, then reused."""
    return tmp_path_factory.mktemp("lifeguard-build")


@pytest.fixture(scope="session")
def example_run(build_dir: Path) -> ProgramRun:
    """The whole program, run under strict mocks with the committed example stack (Pulumi.dev.yaml)."""
    return run_variant("example", build_dir)


@pytest.fixture(scope="session")
def production_run(build_dir: Path) -> ProgramRun:
    return run_variant("production", build_dir)


@pytest.fixture(scope="session")
def nat_run(build_dir: Path) -> ProgramRun:
    return run_variant("nat", build_dir)


@pytest.fixture(scope="session")
def existing_vpc_run(build_dir: Path) -> ProgramRun:
    return run_variant("existing-vpc-arm64", build_dir)


@pytest.fixture(scope="session")
def existing_aurora_run(build_dir: Path) -> ProgramRun:
    return run_variant("existing-aurora", build_dir)


@pytest.fixture(scope="session")
def existing_instance_run(build_dir: Path) -> ProgramRun:
    return run_variant("existing-instance", build_dir)


_VARIANT_FIXTURES = dict(zip(VARIANTS, ("example_run", "production_run", "nat_run", "existing_vpc_run",
                                        "existing_aurora_run", "existing_instance_run"), strict=True))


@pytest.fixture(params=VARIANTS)
def every_run(request: pytest.FixtureRequest) -> ProgramRun:
    """Each variant in turn (``request.param`` names it): for the invariants the README claims of all."""
    run: ProgramRun = request.getfixturevalue(_VARIANT_FIXTURES[request.param])
    return run


@pytest.fixture
def variant(every_run: ProgramRun, request: pytest.FixtureRequest) -> str:
    """The name of the variant ``every_run`` is (for the few facts that differ by design)."""
    name: str = request.node.callspec.params["every_run"]
    return name


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated modules when the mock runtime loads them.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
