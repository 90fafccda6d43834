"""Helpers the compatibility matrix's tests import (its fixtures stay in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import shlex
from dataclasses import dataclass
from pathlib import Path

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack


@dataclass(frozen=True)
class CompatStack:
    stack: LocalStack
    env: dict[str, str]
    """``lifeguard local env``'s output, parsed as a shell would (``eval "$(lifeguard local env)"``)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.stack.app_password(), self.stack.owner_password())


def printed_env(state_dir: Path) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["local", "env", "--state-dir", str(state_dir)]) == 0
    pairs = (line.split("=", 1) for line in out.getvalue().splitlines())
    return {name: shlex.split(value)[0] for name, value in pairs}
