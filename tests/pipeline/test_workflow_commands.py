"""#31.8: text a database can write (a migration's log, a function's error) reaches the CI log, where
GitHub Actions would run any workflow command in it. Every relayed line is neutralised."""

from __future__ import annotations

import pytest

from lifeguard.cli import migrate as migrate_command
from lifeguard.cli.deploy_step import status_printer
from lifeguard.deploy.workflow_commands import neutralise
from tests.pipeline.support import HOSTILE, workflow_commands


def test_no_relayed_line_is_a_workflow_command() -> None:
    assert len(workflow_commands(HOSTILE)) == 6  # the check sees what GitHub would run
    safe = neutralise(HOSTILE)
    assert workflow_commands(safe) == []
    # Nothing is dropped: every line is still there to read.
    assert [line.lstrip("| ") for line in safe.splitlines()] == [
        "migrator: postgres notice: done", "::add-mask::hunter2", "::error title=deploy::the deploy failed",
        "::set-output name=approved::true", "\u200b::stop-commands::resume-token", "\t::warning file=x::y",
        "value ## [set-output name=approved;]true and ## [error]boom"]


@pytest.mark.parametrize("line", [
    "migrator: applied 3 migration(s) in 30 ms; 0 were already applied",
    "migrator: 0004_x.sql failed: ERROR: invalid input syntax for type regclass: 'x'::regclass",
    "connect to [::1]:5432 failed",
    "## a markdown heading",
])
def test_ordinary_lines_are_left_as_they_are(line: str) -> None:
    assert neutralise(line) == line


def test_migrate_and_status_lines_print_no_workflow_command(capsys: pytest.CaptureFixture[str]) -> None:
    migrate_command._log_line(HOSTILE)
    status_printer("migrate")(f"error: the task stopped: {HOSTILE}")
    out, err = capsys.readouterr()
    assert workflow_commands(out) == [] and workflow_commands(err) == []
    assert "::add-mask::hunter2" in out and "::add-mask::hunter2" in err
