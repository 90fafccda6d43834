"""Shared fixtures for the Pulumi program tests: one wheel cache, one run of the example stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.infra_harness import ProgramRun, example_stack_config, run_program


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory per session: Linux wheels are downloaded from PyPI once, then reused."""
    return tmp_path_factory.mktemp("lifeguard-build")


@pytest.fixture(scope="session")
def example_run(build_dir: Path) -> ProgramRun:
    """The whole program, run under strict mocks with the committed example stack (Pulumi.dev.yaml)."""
    return run_program(example_stack_config(), build_dir)


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated modules when the mock runtime loads them.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
