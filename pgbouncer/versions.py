"""Which `[pgbouncer]` settings each PgBouncer release accepts.

PgBouncer refuses to start on a key it does not know (1.18 dies with
``unknown parameter: pgbouncer/max_prepared_statements``), so one ini cannot serve two
releases. The renderer asks this module before it emits any key.

Both tables are checked against the real binaries' ``SHOW CONFIG`` (Debian 12's 1.18.0 and the
shipped 1.24.1, built from Debian 13's source): tests/pgbouncer/test_real_pgbouncer.py. Releases
after the newest table are refused rather than guessed at (1.26 removed ``suspend_timeout``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# Debian 12 (bookworm) ships 1.18.0: the suite still runs the real-PgBouncer tests on it.
DEBIAN_BOOKWORM = "1.18.0"
# The release the image installs and the renderer targets: Debian 13 (trixie)'s PgBouncer, whose
# security updates carry the fixes upstream released in 1.25.1 and 1.25.2 (CVE-2025-12819,
# CVE-2026-6664..6667). The local stack builds the same source package (scripts/build-pgbouncer.sh).
PINNED = "1.24.1"
# Debian's version of that package: what the image's apt-get and the local build fetch.
PINNED_DEBIAN_PACKAGE = "1.24.1-1+deb13u2"
PINNED_DEBIAN_SUITE = "trixie"

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
}
# The newest release whose keys the table above lists; newer ones add and remove keys.
NEWEST_KNOWN = (1, 24)


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
        if key in _KEYS_1_18:
            return True
        since = _ADDED.get(key)
        return since is not None and self.at_least(*since)
