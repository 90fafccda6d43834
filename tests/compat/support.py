"""Helpers the compatibility matrix's tests import (its fixtures stay in conftest.py)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack
from tests.support import exported_env


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
