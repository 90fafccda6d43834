"""The contract modules at the deployable boundaries, and what the Pulumi program imports through them.

Each deployable's shared names (environment variables, paths, users, metric and output names) live in
one small module that both sides import: the deployable's own code, and the program or command that
starts it. A contract module must load with nothing but the standard library, because the side that
imports it may lack the deployable's dependencies (the program has no psycopg, the pipeline's base
install no pulumi). The stack's output names (``lifeguard.aws.outputs``) are the README's table of them.
"""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from lifeguard.aws.outputs import OPTIONAL_OUTPUTS, STACK_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = ("pgbouncer.contract", "lambdas.contract", "migrator.contract", "lifeguard.aws.outputs", "database_urls")
# What the deployables' code needs and the program must not: psycopg (the sidecar's console client and
# the functions' driver), so the infra install need not have it.
IMAGE_ONLY = ("psycopg", "pgbouncer.metrics", "pgbouncer.entrypoint", "lambdas.db")


def modules_loaded_by(modules: Sequence[str]) -> set[str]:
    """The modules a fresh interpreter loads to import ``modules`` (the repository on the path, nothing else)."""
    code = (
        "import importlib, sys; before = set(sys.modules)\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    # -P: not the working directory; the repository only through PYTHONPATH, as in the images.
    done = subprocess.run([sys.executable, "-P", "-c", code, *modules], cwd=REPO, env={"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("contract", CONTRACTS)
def test_a_contract_module_needs_only_the_standard_library(contract: str) -> None:
    parts = contract.split(".")
    outside = {m for m in modules_loaded_by([contract]) if m.split(".")[0] not in sys.stdlib_module_names}
    # The contract itself and its packages' __init__s, which must stay free of third-party imports.
    assert outside == {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def test_the_pulumi_program_imports_none_of_the_images_code() -> None:
    import infra

    program = sorted(
        info.name for info in pkgutil.walk_packages(infra.__path__, "infra.") if info.name != "infra.__main__"
    )
    assert "infra.program" in program
    loaded = modules_loaded_by(program)
    assert "pgbouncer.contract" in loaded
    assert sorted(m for m in loaded if m.startswith(IMAGE_ONLY)) == []


def test_the_readme_outputs_table_lists_exactly_the_contract() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("#### Stack outputs", 1)[1].split("\n\n", 2)[1]
    documented = {name for row in section.splitlines()[2:] for name in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])}
    assert documented == STACK_OUTPUTS | OPTIONAL_OUTPUTS
