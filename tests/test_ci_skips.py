"""The CI skip guard (tests/ci_skips.py), run on a throwaway suite in its own pytest session."""

from __future__ import annotations

import pytest

from tests.ci_skips import ALLOWED, CI_ENV

SUITE = """
import pytest

def test_runs():
    assert True

def test_needs_a_tool():
    pytest.skip("the tool is not installed")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_ci_fails_on_a_skip_and_names_it(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CI_ENV, "true")
    result = suite.runpytest("-p", "tests.ci_skips")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*CI=true: 1 skipped outside the allowlist*",
        "SKIPPED test_suite.py::test_needs_a_tool: the tool is not installed",
    ])


def test_a_module_level_skip_counts_too(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CI_ENV, "true")
    pytester.makepyfile(test_tier="import pytest\npytest.skip('no engine', allow_module_level=True)\n")
    result = pytester.runpytest("-p", "tests.ci_skips")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["SKIPPED test_tier.py: no engine"])


def test_outside_ci_a_skip_is_a_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CI_ENV, raising=False)
    result = suite.runpytest("-p", "tests.ci_skips")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "outside the allowlist" not in result.stdout.str()


def test_a_failed_run_stays_failed_and_a_clean_run_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CI_ENV, "true")
    pytester.makepyfile(test_ok="def test_ok():\n    assert True\n")
    assert pytester.runpytest("-p", "tests.ci_skips").ret == pytest.ExitCode.OK
    pytester.makepyfile(test_bad="import pytest\n\ndef test_bad():\n    assert False\n\n"
                                 "def test_skip():\n    pytest.skip('x')\n")
    assert pytester.runpytest("-p", "tests.ci_skips").ret == pytest.ExitCode.TESTS_FAILED


def test_every_allowed_skip_says_why_and_names_one_test() -> None:
    for entry in ALLOWED:
        assert entry.test.startswith("tests/") and "::" in entry.test
        assert entry.reason and len(entry.why) > 40
