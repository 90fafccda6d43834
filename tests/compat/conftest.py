"""The compatibility matrix's fixtures: one local stack, its URLs as ``lifeguard local env`` prints
them, and the pinned Node.js drivers installed (``npm ci``) into a cache the tests own."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeguard.stack.pgbouncer_install import cache_dir
from lifeguard.stack.stack import LocalStack, StackOptions
from lifeguard.stack.system import free_port
from pgbouncer.scram import MIN_APP_ITERATIONS
from tests.compat.support import CompatStack, printed_env
from tests.support import NODE, NODE_BIN, NPM_CLI

NODE_DIR = Path(__file__).with_name("node")
# What the cache key covers: the pins and the script that imports them.
NODE_FILES = ("package.json", "package-lock.json", "spike.mjs")
NPM_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def compat_stack(state_root: Path) -> Iterator[CompatStack]:
    stack = LocalStack(state_root / "compat")
    pg_port = free_port()
    pooler_port = free_port()
    while pooler_port == pg_port:
        pooler_port = free_port()
    try:
        # The floor count: every driver of the matrix logs in against it (test_scram_floor.py checks it is set).
        stack.up(StackOptions(pg_port=pg_port, pooler_port=pooler_port, durable=False,
                              scram_iterations=MIN_APP_ITERATIONS))
        yield CompatStack(stack, printed_env(stack.state_dir))
    finally:
        stack.down(purge=True)  # as root, also its service directory under /var/lib/lifeguard


@pytest.fixture(scope="session")
def node_drivers() -> Path:
    """A directory holding ``spike.mjs`` and its pinned drivers, installed with the dev install's npm."""
    digest = hashlib.sha256(b"".join((NODE_DIR / name).read_bytes() for name in NODE_FILES)).hexdigest()
    target = cache_dir() / f"node-drivers-{digest[:16]}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in NODE_FILES:
        shutil.copy2(NODE_DIR / name, partial / name)
    # ci: exactly the lock, integrity-checked; no install scripts (neither driver needs one). The
    # environment as it is (the user's npm configuration, e.g. its registry), the wheel's node first.
    env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    result = subprocess.run(
        [str(NODE), str(NPM_CLI), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=partial, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"npm ci of tests/compat/node failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (partial / ".complete").write_text("")
    try:
        partial.rename(target)
    except OSError:
        # Another run finished first: use its copy.
        shutil.rmtree(partial, ignore_errors=True)
    return target
