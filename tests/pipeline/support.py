"""What the pipeline's tests share: the moto stack's names, a clock that does not sleep, running a command on it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeguard import cli

REGION = "eu-west-1"
CONTAINER = "migrator"
LOG_PREFIX = "migrate"


class FakeClock:
    """A clock whose sleep only moves time forward, and remembers every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class MigrationStack:
    """The migration resources the infra program creates, in moto, and the outputs naming them."""

    outputs: dict[str, Any]

    def write(self, directory: Path) -> Path:
        path = directory / "outputs.json"
        path.write_text(json.dumps(self.outputs), encoding="utf-8")
        return path


def run_with_clock(argv: Sequence[str], clock: FakeClock) -> int:
    """``lifeguard ARGV`` as :func:`lifeguard.cli.main` parses it, its waits on ``clock``."""
    args = cli.build_parser(load=(argv[0],)).parse_args(list(argv))
    return int(args.func(args, clock=clock))


# What a database can put into a line we relay: a NOTICE, an error quoting a row, a value with line breaks.
HOSTILE = (
    "migrator: postgres notice: done\n"
    "::add-mask::hunter2\n"
    "  ::error title=deploy::the deploy failed\r"
    "::set-output name=approved::true\r\n"
    "\u200b::stop-commands::resume-token\n"
    "\t::warning file=x::y\n"
    "value ##[set-output name=approved;]true and ##[error]boom"
)


def workflow_commands(output: str) -> list[str]:
    """The lines GitHub's runner would act on: split as it reads lines, then its v2 (``::`` after
    leading blanks) and v1 (``##[`` anywhere) command forms. Zero-width and other format characters
    count as blank here, stricter than the runner."""
    found = []
    for line in re.split(r"\r\n|\r|\n", output):
        stripped = line.lstrip(" \t\u200b\u200c\u200d\u2060\ufeff\u00a0\u1680\u180e\u2000\u3000\x0b\x0c")
        if stripped.startswith("::") or "##[" in line:
            found.append(line)
    return found
