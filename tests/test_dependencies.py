"""Dependencies: declared for the install that imports them, locked from PyPI, shipped from the lock."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Collection, Iterable, Iterator, Mapping
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra import SAMPLE_REQUIREMENTS
from lifeguard import cli
from lifeguard.aws.lambda_package import lambda_environment, read_requirements
from lifeguard.aws.types import Architecture
from tests.lockfile import FIRST_PARTY, REPO_ROOT, STDLIB, closure, install_roots, load

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
# Each install and the code it runs: that code's imports, followed through the first-party modules
# it imports (at any depth, in functions too, but for the command loaders the install never calls:
# see not_run), must all be declared by that install.
INSTALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name: (extras on top of the base install, root modules or packages)
    "pipeline": ((), ("lifeguard.cli.__init__", "lifeguard.cli.migrate", "lifeguard.cli.smoke")),
    # The library (lifeguard.aws) and the sample stack that composes it.
    "infra": (("infra",), ("infra", "lifeguard.aws")),
    # Every part of the CLI but the library, which it reaches only through the modules it imports.
    "local": (("local",), ("lifeguard.__init__", *sorted(
        f"lifeguard.{p.name}" for p in (REPO_ROOT / "lifeguard").iterdir()
        if (p / "__init__.py").is_file() and p.name != "aws"
    ), "pgbouncer", "lambdas", "migrator")),
}


def module_file(name: str, root: Path = REPO_ROOT) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_modules(name: str, root: Path = REPO_ROOT) -> list[str]:
    """``name`` and, for a package, every module under it."""
    path = root.joinpath(*name.split("."))
    if not path.is_dir():
        return [name]
    return [".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in path.rglob("*.py")]


def not_run(extras: Iterable[str]) -> dict[str, frozenset[str]]:
    """Module -> its functions an install never calls: the loaders of the commands whose extra it lacks.

    A command's loader (``lifeguard.cli.COMMANDS``) imports the command's module, and runs only when
    that command does; test_cli.py runs the base install's commands to check it.
    """
    skipped: dict[str, frozenset[str]] = {}
    for command in cli.COMMANDS.values():
        if command.extra is not None and command.extra not in extras:
            module = command.load.__module__
            skipped[module] = skipped.get(module, frozenset()) | {command.load.__name__}
    return skipped


def _imports(tree: ast.AST, skipped_functions: Collection[str] = ()) -> Iterator[tuple[str, int]]:
    """Every absolute import, at any depth, except those only type checkers see or ``skipped_functions`` hold."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
        elif isinstance(node, ast.FunctionDef) and node.name in skipped_functions:
            skipped |= {id(inner) for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            # `from package import module` imports the module too.
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def third_party_imports(
    roots: Iterable[str], root: Path = REPO_ROOT, first_party: frozenset[str] = FIRST_PARTY,
    skipped_functions: Mapping[str, Collection[str]] | None = None,
) -> dict[str, set[str]]:
    """Top-level third-party module -> where it is imported, from ``roots`` through first-party code.

    ``skipped_functions``: module -> functions of it whose imports are not followed (see :func:`not_run`).
    """
    skipped_functions = skipped_functions or {}
    found: dict[str, set[str]] = {}
    todo = [m for name in roots for m in package_modules(name, root)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_file(name, root)
        if name in seen or path is None:
            continue
        seen.add(name)
        skip = skipped_functions.get(name.removesuffix(".__init__"), ())
        for imported, line in _imports(ast.parse(path.read_text(), str(path)), skip):
            top = imported.split(".")[0]
            if top in first_party:
                todo.append(imported)
            elif top not in STDLIB and top != "__future__":
                found.setdefault(top, set()).add(f"{path.relative_to(root)}:{line}")
    return found


def declared(extras: Iterable[str]) -> set[str]:
    requirements = list(PYPROJECT["dependencies"])
    for extra in extras:
        requirements += PYPROJECT["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def undeclared(imports: dict[str, set[str]], names: set[str]) -> dict[str, list[str]]:
    owners = {module: {canonicalize_name(d) for d in dists} for module, dists in packages_distributions().items()}
    return {
        module: sorted(where) for module, where in imports.items()
        if not owners.get(module, {canonicalize_name(module)}) & names
    }


@pytest.mark.parametrize("install", INSTALLS)
def test_each_install_declares_every_module_its_code_imports(install: str) -> None:
    extras, roots = INSTALLS[install]
    imports = third_party_imports(roots, skipped_functions=not_run(extras))
    assert imports, "the walk found no third-party import at all"
    missing = undeclared(imports, declared(extras))
    assert missing == {}, f"imported but not in the {install} install (pyproject.toml): {missing}"


def test_the_pipeline_commands_reach_nothing_of_the_local_stack() -> None:
    extras, roots = INSTALLS["pipeline"]
    imports = third_party_imports(roots, skipped_functions=not_run(extras))
    assert set(imports) == {"boto3", "botocore"}


def test_the_walk_follows_first_party_imports_into_functions(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "cli.py").write_text("from app import helpers\n")
    (tmp_path / "app" / "helpers.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_ecs\n"
        "def chart():\n    import matplotlib.pyplot\n"
    )
    imports = third_party_imports(["app.cli"], tmp_path, frozenset({"app"}))
    assert imports == {"matplotlib": {"app/helpers.py:5"}}
    assert undeclared(imports, {"boto3"}) == {"matplotlib": ["app/helpers.py:5"]}


def test_the_walk_skips_only_the_command_loaders_the_install_never_calls(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text(
        "def _chart():\n    import matplotlib\n\ndef _ship():\n    import boto3\n"
    )
    (tmp_path / "app" / "cli.py").write_text("def _chart():\n    import psycopg\n")
    imports = third_party_imports(["app.cli"], tmp_path, frozenset({"app"}), {"app": {"_chart"}})
    assert imports == {"boto3": {"app/__init__.py:5"}, "psycopg": {"app/cli.py:2"}}
    # The base install skips exactly the local commands' loaders; the local install skips none.
    assert not_run(()) == {"lifeguard.cli": {"_local", "_demo", "_bench", "_doctor"}}
    assert not_run(("local",)) == {}


def test_deptry_finds_no_undeclared_unused_or_transitive_dependency() -> None:
    done = subprocess.run([sys.executable, "-m", "deptry", "."], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lock_is_pypi_only_with_hashes() -> None:
    lock = load()
    for package in lock.values():
        if package.name == "lifeguard":
            assert package.source == {"editable": "."}
            continue
        assert package.source == {"registry": "https://pypi.org/simple"}, package.name
        assert package.hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in package.hashes), package.name
        assert package.urls and all(u.startswith("https://files.pythonhosted.org/") for u in package.urls)
    assert "file:" not in (REPO_ROOT / "uv.lock").read_text()


def test_the_lock_matches_pyproject() -> None:
    done = subprocess.run([str(REPO_ROOT / "scripts" / "uv"), "lock", "--check", "--offline", "--quiet"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"pyproject.toml changed without a relock (run scripts/relock):\n{done.stderr}"


def test_the_base_install_is_small() -> None:
    """The pipeline jobs install boto3 and what it needs, nothing of Pulumi or the local stack."""
    lock = load()
    base = closure(lock, install_roots(lock))
    assert {"boto3", "botocore"} <= set(base) <= {
        "boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3", "lifeguard",
    }


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_lambda_requirements_are_the_locks_lambda_group(architecture: Architecture) -> None:
    lock = load()
    expected = closure(lock, install_roots(lock, groups=["lambda"], base=False), lambda_environment(architecture))
    pins = read_requirements(architecture, SAMPLE_REQUIREMENTS)
    assert {p.name: p.version for p in pins} == {p.name: p.version for p in expected.values()}
    for pin in pins:
        assert set(pin.hashes) == lock[pin.name].hashes, f"{pin.name}: hashes differ from uv.lock"
    # The runtime is CPython 3.13 on Linux: neither psycopg's typing-extensions (below 3.13 only)
    # nor its Windows-only tzdata.
    assert {"psycopg", "psycopg-binary"} == {p.name for p in pins}
