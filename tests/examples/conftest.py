"""One wheel and one virtualenv per session, outside the repository; their timings in the summary."""

from __future__ import annotations

import pytest

from tests.examples.installed import Installed, prepare

_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    kit = prepare(tmp_path_factory.mktemp("installed-lifeguard"))
    _TIMINGS.update(kit.timings)
    return kit


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS:
        figures = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in _TIMINGS.items())
        terminalreporter.write_line(f"lifeguard from its wheel, outside the repository: {figures}")
