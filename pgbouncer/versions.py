"""Which `[pgbouncer]` settings each PgBouncer release accepts.

PgBouncer refuses to start on a key it does not know (1.18 dies with
``unknown parameter: pgbouncer/max_prepared_statements``), so one ini cannot serve two
releases. The renderer asks this module before it emits any key.

Both tables are checked against the real binaries' ``SHOW CONFIG`` (Debian 12's 1.18.0 and the
shipped 1.26.1, Debian's own binary package): tests/pgbouncer/test_real_pgbouncer.py. Releases
after the newest table are refused rather than guessed at (1.26 removed ``suspend_timeout``).

This module also pins the Debian binary packages the image and the local stack install: standard
library only, since the image build (pgbouncer/debian_package.py) and scripts/install-pgbouncer.sh
read it before any virtualenv exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import total_ordering

# Debian 12 (bookworm) ships 1.18.0: the suite still runs the real-PgBouncer tests on it.
DEBIAN_BOOKWORM = "1.18.0"


@dataclass(frozen=True)
class DebianBinary:
    """One Debian binary package, pinned by the SHA256 of its ``.deb`` per architecture.

    The digests equal the suite's ``Packages`` index; anything else is refused (pgbouncer/debian_package.py).
    """

    package: str
    version: str
    """Debian's version, e.g. ``1.26.1-1``: upstream release, then Debian's revision."""
    suite: str
    """The Debian suite that published it (for the record: the pool path does not name it)."""
    sha256: Mapping[str, str]
    """Architecture (``dpkg --print-architecture``) to the ``.deb``'s SHA256."""

    @property
    def release(self) -> str:
        """The upstream release, what ``pgbouncer --version`` prints: ``1.26.1-1`` -> ``1.26.1``."""
        return self.version.split("-", 1)[0]

    def filename(self, arch: str) -> str:
        return f"{self.package}_{self.version}_{arch}.deb"

    def pool_path(self, arch: str) -> str:
        """Where every Debian mirror keeps it: ``pool/main/p/pgbouncer/pgbouncer_1.26.1-1_amd64.deb``."""
        return f"pool/main/{self.package[0]}/{self.package}/{self.filename(arch)}"

    def digest(self, arch: str) -> str:
        if arch not in self.sha256:
            raise ValueError(f"no SHA256 pinned for {self.filename(arch)}: architectures pinned are "
                             f"{', '.join(sorted(self.sha256))} (pgbouncer/versions.py)")
        return self.sha256[arch]


# The PgBouncer the image installs and the renderer targets: PgBouncer 1.26.1, which fixes
# CVE-2026-107349 (one unauthenticated packet spins PgBouncer on a core) and CVE-2026-107350 (SCRAM
# impersonation). Debian 13's own package, 1.24.1-1+deb13u2, carries neither fix; Debian forky's
# binary package of 1.26.1 installs on Debian 13 with Debian 13's libraries (pgbouncer/Dockerfile),
# and the local stack runs that very binary (scripts/install-pgbouncer.sh). pgbouncer/advisories.py
# lists the affected ranges; a test fails when PINNED falls in one.
SHIPPED_PACKAGE = DebianBinary(
    "pgbouncer", "1.26.1-1", "forky",
    {
        "amd64": "1f7a1d78159bd1e37628cb3b3e503e184157971fb1ee27a74873b513cac1d797",
        "arm64": "5c6b5de6feeb8dd1a49430cd88e07d98f87ff90ecf44db1657ec660fec08cef2",
    },
)
PINNED = SHIPPED_PACKAGE.release
# Debian 13's own PgBouncer, no longer shipped: only the benchmarks' before/after comparison installs
# it (scripts/install-pgbouncer.sh debian13), the same way, as Debian built it.
DEBIAN_13_PACKAGE = DebianBinary(
    "pgbouncer", "1.24.1-1+deb13u2", "trixie",
    {"amd64": "19a7df742f9c664ac88d04c5327ed97266844fd900ea7ccf0d8f6ddf27eca0db"},
)
PACKAGES = {"shipped": SHIPPED_PACKAGE, "debian13": DEBIAN_13_PACKAGE}
"""What scripts/install-pgbouncer.sh can install, by the name it takes on its command line."""

# Equal to what Debian's 1.18.0 lists in SHOW CONFIG (tests/pgbouncer/test_real_pgbouncer.py).
# Not service_name: it exists only in Windows builds, and Linux builds die on it.
_KEYS_1_18 = frozenset(
    """
    admin_users application_name_add_host auth_file auth_hba_file auth_query auth_type auth_user
    autodb_idle_timeout client_idle_timeout client_login_timeout client_tls_ca_file
    client_tls_cert_file client_tls_ciphers client_tls_dheparams client_tls_ecdhcurve
    client_tls_key_file client_tls_protocols client_tls_sslmode conffile default_pool_size
    disable_pqexec dns_max_ttl dns_nxdomain_ttl dns_zone_check_period idle_transaction_timeout
    ignore_startup_parameters job_name listen_addr listen_backlog listen_port log_connections
    log_disconnections log_pooler_errors log_stats logfile max_client_conn max_db_connections
    max_packet_size max_user_connections min_pool_size pidfile pkt_buf pool_mode query_timeout
    query_wait_timeout reserve_pool_size reserve_pool_timeout resolv_conf sbuf_loopcnt
    server_check_delay server_check_query server_connect_timeout server_fast_close
    server_idle_timeout server_lifetime server_login_retry server_reset_query_always
    server_reset_query server_round_robin server_tls_ca_file server_tls_cert_file
    server_tls_ciphers server_tls_key_file server_tls_protocols server_tls_sslmode
    so_reuseport stats_period stats_users suspend_timeout syslog_facility syslog_ident syslog
    tcp_defer_accept tcp_keepalive tcp_keepcnt tcp_keepidle tcp_keepintvl tcp_socket_buffer
    tcp_user_timeout unix_socket_dir unix_socket_group unix_socket_mode user verbose
    """.split()
)

# Keys added after 1.18, with the release that introduced them (up to NEWEST_KNOWN).
_ADDED: dict[str, tuple[int, int]] = {
    "auth_dbname": (1, 19),
    "peer_id": (1, 19),
    "cancel_wait_timeout": (1, 19),
    "track_extra_parameters": (1, 20),
    "max_prepared_statements": (1, 21),
    "auth_ident_file": (1, 23),
    "max_db_client_connections": (1, 24),
    "max_user_client_connections": (1, 24),
    "auth_ldap_options": (1, 25),
    "client_tls13_ciphers": (1, 25),
    "server_tls13_ciphers": (1, 25),
    "query_wait_notify": (1, 25),
    "scram_iterations": (1, 25),
    "transaction_timeout": (1, 25),
    "login_notify_message": (1, 26),
    "pool_idle_timeout": (1, 26),
}
# Keys a release removed, with that release: 1.26 dropped online restart and its suspend_timeout.
_REMOVED: dict[str, tuple[int, int]] = {
    "suspend_timeout": (1, 26),
}
# The newest release whose keys the tables above list; newer ones add and remove keys.
NEWEST_KNOWN = (1, 26)


@total_ordering
@dataclass(frozen=True)
class PgBouncerVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> PgBouncerVersion:
        """Parse ``1.18.0``, ``1.24`` or the first line of ``pgbouncer --version``."""
        match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not match:
            raise ValueError(f"cannot read a PgBouncer version from {text!r}; expected e.g. '1.24.1'")
        major, minor, patch = match.groups()
        version = cls(int(major), int(minor), int(patch or 0))
        if version < cls(1, 18) or (version.major, version.minor) > NEWEST_KNOWN:
            newest = ".".join(map(str, NEWEST_KNOWN))
            raise ValueError(
                f"PgBouncer {version} is not supported; use a release from 1.18 to {newest} (pinned: {PINNED})"
            )
        return version

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, PgBouncerVersion):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def accepts(self, key: str) -> bool:
        """Whether this release's ``[pgbouncer]`` section knows ``key``."""
        removed = _REMOVED.get(key)
        if removed is not None and self.at_least(*removed):
            return False
        if key in _KEYS_1_18:
            return True
        since = _ADDED.get(key)
        return since is not None and self.at_least(*since)
