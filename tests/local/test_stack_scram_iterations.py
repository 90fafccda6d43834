"""The local stack's SCRAM iteration count: chosen when the stack is made, kept by an existing stack.

PgBouncer's auth_file and ``pg_authid`` must hold the same verifier, so the count never changes
under a stack: a stack made before the count was a setting keeps Postgres' 4096, and asking an
existing stack for another count is refused with how to start over.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack, StackConfig, StackError, StackOptions
from pgbouncer.scram import APP_ITERATIONS, ITERATIONS, MIN_APP_ITERATIONS


def test_a_new_stack_gets_the_count_for_its_generated_password() -> None:
    assert StackConfig.create(StackOptions()).scram_iterations == APP_ITERATIONS
    assert StackConfig.create(StackOptions(scram_iterations=ITERATIONS)).scram_iterations == ITERATIONS


def test_a_stack_made_before_the_setting_keeps_4096(tmp_path: Path) -> None:
    old = asdict(StackConfig.create(StackOptions()))
    del old["scram_iterations"]  # stack.json as an earlier lifeguard wrote it
    config = StackConfig.from_json(json.dumps(old), tmp_path / "stack.json")
    assert config.scram_iterations == ITERATIONS
    # Asking it for another count is a conflict, not a silent change of one side's verifier.
    [conflict] = config.conflicts(StackOptions(scram_iterations=APP_ITERATIONS))
    assert conflict == f"--scram-iterations {APP_ITERATIONS} (the stack has {ITERATIONS})"


def test_a_count_below_the_floor_is_refused_before_anything_is_made(stack_dir: Path) -> None:
    with pytest.raises(StackError, match=f"--scram-iterations must be from {MIN_APP_ITERATIONS} "):
        LocalStack(stack_dir).up(StackOptions(scram_iterations=MIN_APP_ITERATIONS - 1))
    assert not (stack_dir / "stack.json").exists()


def test_local_up_takes_the_count(stack_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["local", "up", "--state-dir", str(stack_dir), "--scram-iterations", "8"])
    assert code != 0
    assert f"--scram-iterations must be from {MIN_APP_ITERATIONS}" in capsys.readouterr().err
    assert not (stack_dir / "stack.json").exists()
