"""A pytest plugin: under CI (``CI=true``) any skip outside :data:`ALLOWED` fails the run.

A skipped tier is a README claim left unproven while the run still looks green, so CI turns each
unexpected skip (a test's, a fixture's or a whole module's) into a failed exit and lists it.
Elsewhere skips stay skips: a developer without root or Docker still gets a useful run.
tests/conftest.py loads this plugin; tests/test_ci_skips.py runs it on a throwaway suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

CI_ENV = "CI"


@dataclass(frozen=True)
class AllowedSkip:
    test: str
    """The start of the test's node id (a parametrised test: up to and including ``[``)."""
    reason: str
    """A piece of the skip's message that must be there."""
    why: str
    """Why CI may skip it: nothing is left unproven."""


ALLOWED: tuple[AllowedSkip, ...] = (
    AllowedSkip(
        "tests/pgbouncer/test_real_pgbouncer.py::test_pinned_release_ini_kills_the_older_binary[",
        "accepts max_prepared_statements",
        "it shows the shipped release's ini killing a release without prepared-statement support "
        "(Debian 12's 1.18, where it runs); on the shipped release itself there is nothing to kill",
    ),
)


def in_ci() -> bool:
    return os.environ.get(CI_ENV, "").lower() == "true"


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(nodeid: str, reason: str) -> bool:
    return any(nodeid.startswith(entry.test) and entry.reason in reason for entry in ALLOWED)


class SkipGuard:
    """Collects the skips outside :data:`ALLOWED`; under CI a run with any of them exits 1 and lists them."""

    def __init__(self) -> None:
        self.unexpected: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        # An xfail is reported as skipped too; it is not a skipped proof.
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = _reason(report)
            if not allowed(report.nodeid, reason):
                self.unexpected.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # NO_TESTS_COLLECTED too: a run whose only module was skipped whole.
        if in_ci() and self.unexpected and session.exitstatus in (pytest.ExitCode.OK,
                                                                  pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not (in_ci() and self.unexpected):
            return
        terminalreporter.section(
            f"{CI_ENV}=true: {len(self.unexpected)} skipped outside the allowlist (tests/ci_skips.py)", red=True
        )
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.line("CI fails on these: install what they need, or allowlist one with the reason "
                              "nothing is left unproven", red=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "lifeguard-ci-skip-guard")
