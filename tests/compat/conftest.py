"""The compatibility matrix's fixtures: one local stack, its URLs as ``lifeguard local env`` prints
them, and the pinned Node.js drivers installed (``npm ci``) into a cache the tests own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeguard.aws.npm import NpmError, install
from lifeguard.stack.pgbouncer_install import cache_dir
from lifeguard.stack.stack import LocalStack, StackOptions
from lifeguard.stack.system import free_port
from pgbouncer.scram import MIN_APP_ITERATIONS
from tests.compat.support import CompatStack, printed_env
from tests.support import NODE

NODE_DIR = Path(__file__).with_name("node")


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
    try:
        return install(NODE_DIR, cache_dir() / "node-drivers", NODE, omit_dev=False)
    except NpmError as exc:
        pytest.fail(str(exc))
