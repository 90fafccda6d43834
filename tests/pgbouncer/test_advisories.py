"""Known-vulnerable PgBouncer releases as data: the pinned release must be in no affected range."""

from __future__ import annotations

import pytest

from pgbouncer.advisories import ADVISORIES, Advisory, affecting, fixed_in
from pgbouncer.versions import DEBIAN_BOOKWORM, PINNED


def test_the_pinned_release_is_in_no_affected_range() -> None:
    """A new advisory covering PINNED turns the suite red until the pin moves to a fixed release."""
    assert [a.describe() for a in affecting(PINNED)] == []


def cves(release: str) -> set[str]:
    return {a.cve for a in affecting(release)}


def test_the_ranges_are_the_changelogs() -> None:
    # CVE-2026-107350: 1.17.0 through 1.26.0; CVE-2026-107349: 1.20.0 through 1.26.0.
    assert "CVE-2026-107350" in cves(DEBIAN_BOOKWORM) and "CVE-2026-107349" not in cves(DEBIAN_BOOKWORM)
    assert {"CVE-2026-107350", "CVE-2026-107349"} <= cves("1.24.1")
    assert cves("1.26.0") == {"CVE-2026-107350", "CVE-2026-107349", "CVE-2026-107348"}
    assert "CVE-2026-107350" not in cves("1.16.1") and "CVE-2026-107350" in cves("1.17.0")
    assert cves("1.26.1") == set() and cves("1.27.0") == set()
    assert fixed_in(affecting(DEBIAN_BOOKWORM)) == "1.26.1"


def test_each_entry_is_complete_and_listed_once() -> None:
    assert len({a.cve for a in ADVISORIES}) == len(ADVISORIES)
    for advisory in ADVISORIES:
        assert advisory.cve.startswith("CVE-") and advisory.source.startswith("https://")
        assert advisory.affects(advisory.first_affected or "0.0.1") and not advisory.affects(advisory.fixed)
        assert "\n" not in advisory.describe()


@pytest.mark.parametrize("release", ["1.26", "1.26.1-1", "x"])
def test_a_release_must_be_major_minor_patch(release: str) -> None:
    with pytest.raises(ValueError):
        Advisory("CVE-0", "1.0.0", "s").affects(release)
