"""PgBouncer's published vulnerabilities, as data: which upstream releases each one affects.

One entry per CVE, with the affected range as PgBouncer's changelog states it and the release that
fixed it. ``tests/pgbouncer/test_advisories.py`` fails when the pinned release
(:data:`pgbouncer.versions.PINNED`) falls in a range, so a new entry here turns the suite red until
the pin moves; ``lifeguard doctor`` warns when a pooler it examines reports an affected release.

Ranges are upstream's. A distribution may backport a fix into an older release (Debian 13's
1.24.1-1+deb13u2 carries CVE-2025-12819 and CVE-2026-6664 to 6667), and ``SHOW VERSION`` does not
show patches: a release in a range may be patched, one outside it is not affected.

Source for every entry: PgBouncer's changelog (NEWS.md), https://www.pgbouncer.org/changelog.html,
as shipped in Debian's pgbouncer 1.26.1-1 (/usr/share/doc/pgbouncer/NEWS.md.gz). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgbouncer.versions import PgBouncerVersion

CHANGELOG = "https://www.pgbouncer.org/changelog.html"


def _release(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in text.split("."))
    return major, minor, patch


@dataclass(frozen=True)
class Advisory:
    cve: str
    fixed: str
    """The first release with the fix, e.g. ``1.26.1``."""
    summary: str
    first_affected: str | None = None
    """The first affected release, when the changelog names one; None: every release before ``fixed``."""
    only_when: str = ""
    """The configuration the attack needs, when it needs one."""
    source: str = CHANGELOG

    def affects(self, release: str | PgBouncerVersion) -> bool:
        version = _release(str(release))
        low = _release(self.first_affected) if self.first_affected else (0, 0, 0)
        return low <= version < _release(self.fixed)

    def describe(self) -> str:
        """``CVE-2026-107349 (fixed in 1.26.1): ...``, one line."""
        condition = f" (only when {self.only_when})" if self.only_when else ""
        return f"{self.cve} (fixed in {self.fixed}): {self.summary}{condition}"


ADVISORIES: tuple[Advisory, ...] = (
    Advisory("CVE-2026-107350", "1.26.1",
             "a second StartupMessage during SCRAM authentication to a non-existent database lets a client "
             "that knows one auth_file user's password log in as any other SCRAM user",
             first_affected="1.17.0"),
    Advisory("CVE-2026-107349", "1.26.1",
             "an unauthenticated StartupMessage whose options hold an empty option name (-c=) spins "
             "PgBouncer on a core, and it serves no client until killed",
             first_affected="1.20.0",
             only_when="ignore_startup_parameters is non-empty and does not list options"),
    Advisory("CVE-2026-107348", "1.26.1",
             "a packet header declaring a length above 2^31 hangs PgBouncer in a loop",
             first_affected="1.21.0", only_when="max_packet_size is 2147483649 or more"),
    Advisory("CVE-2026-19888", "1.26.0",
             "an unauthenticated SCRAM client-final-message without a nonce crashes PgBouncer",
             first_affected="1.11.0"),
    Advisory("CVE-2026-6668", "1.26.0",
             "an integer overflow in packet-buffer growth hangs PgBouncer, reachable without authenticating"),
    Advisory("CVE-2026-6669", "1.26.0",
             "an unbounded SCRAM iteration count from a server stalls PgBouncer for every client"),
    Advisory("CVE-2026-6664", "1.25.2",
             "an unauthenticated malformed SCRAM packet crashes PgBouncer (integer overflow in packet parsing)"),
    Advisory("CVE-2026-6665", "1.25.2",
             "a server's long SCRAM nonce overflows PgBouncer's stack"),
    Advisory("CVE-2026-6666", "1.25.2",
             "a server error response without SQLSTATE crashes PgBouncer (NULL dereference)"),
    Advisory("CVE-2026-6667", "1.25.2",
             "any console user may run KILL_CLIENT, not only admin_users"),
    Advisory("CVE-2025-12819", "1.25.1",
             "an unauthenticated client runs arbitrary SQL during authentication through search_path",
             only_when="track_extra_parameters lists search_path, auth_user is set and auth_query is not "
                       "schema-qualified"),
    Advisory("CVE-2025-2291", "1.24.1",
             "auth_query ignores a password's VALID UNTIL", only_when="auth_query is used"),
)


def affecting(release: str | PgBouncerVersion) -> list[Advisory]:
    """The advisories whose range holds ``release`` (upstream's ranges: see the module's note on backports)."""
    return [advisory for advisory in ADVISORIES if advisory.affects(release)]


def fixed_in(advisories: list[Advisory]) -> str:
    """The oldest release that fixes every one of ``advisories``."""
    return ".".join(map(str, max(_release(a.fixed) for a in advisories)))
