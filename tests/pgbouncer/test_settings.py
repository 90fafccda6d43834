"""The typed settings, their validation and both renderers, without running PgBouncer.

What the real binary thinks of the rendered files is in ``test_real_pgbouncer.py``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from typing import Any

import pytest

from pgbouncer import settings
from pgbouncer.scram import scram_verifier
from pgbouncer.settings import (
    MAX_PASSWORD_BYTES,
    NLB_IDLE_TIMEOUT_S,
    PoolerSettings,
    SettingsError,
    Upstream,
    render_userlist,
)
from pgbouncer.versions import DEBIAN_BOOKWORM, PINNED, PgBouncerVersion
from tests.secrecy import assert_no_secret

UPSTREAM = Upstream(host="app.cluster-abc.eu-west-1.rds.amazonaws.com", dbname="app")


def make(**overrides: Any) -> PoolerSettings:
    fields: dict[str, Any] = {"upstream": UPSTREAM, "default_pool_size": 20}
    fields.update(overrides)
    return PoolerSettings(**fields)


def ini_pairs(text: str) -> dict[str, str]:
    """The ``[pgbouncer]`` section as PgBouncer reads it: ``key = value`` lines after the header."""
    section = text.split("[pgbouncer]\n", 1)[1]
    pairs: dict[str, str] = {}
    for line in section.splitlines():
        key, sep, value = line.partition(" = ")
        assert sep, f"not a key = value line: {line!r}"
        assert key not in pairs, f"{key} rendered twice"
        pairs[key] = value
    return pairs


# -- defaults for serverless clients ------------------------------------------------------


def test_defaults_render_the_serverless_profile() -> None:
    pairs = ini_pairs(make().render_ini())
    assert pairs["pool_mode"] == "transaction"
    assert pairs["default_pool_size"] == "20"
    assert pairs["max_client_conn"] == "10000"
    assert int(pairs["listen_backlog"]) > 128  # PgBouncer's default drops bursts
    assert 0 < int(pairs["client_idle_timeout"]) < NLB_IDLE_TIMEOUT_S
    assert int(pairs["idle_transaction_timeout"]) > 0
    # A queued client must hear from the pooler before a function timeout (tens of seconds).
    assert 0 < int(pairs["query_wait_timeout"]) <= 30
    assert pairs["tcp_keepalive"] == "1"
    assert int(pairs["tcp_keepidle"]) < NLB_IDLE_TIMEOUT_S
    assert pairs["server_tls_sslmode"] == "verify-full"
    assert pairs["server_tls_ca_file"] == "/etc/pgbouncer/rds-ca-bundle.pem"
    assert pairs["client_tls_sslmode"] == "require"
    assert pairs["ignore_startup_parameters"] == "extra_float_digits,sslrootcert"
    assert pairs["log_connections"] == "0"
    assert pairs["log_disconnections"] == "0"
    assert pairs["log_pooler_errors"] == "1"
    assert pairs["auth_type"] == "scram-sha-256"
    assert pairs["auth_file"] == "/run/pgbouncer/userlist.txt"
    # The per-task cap defaults to the pool: a second user cannot double the server budget.
    assert pairs["max_db_connections"] == "20"
    # Each login role one below it: the other one of a password rotation can always get a server.
    assert pairs["max_user_connections"] == "19"
    assert "auth_query" not in pairs and "auth_user" not in pairs  # cannot read pg_authid on RDS


def test_databases_section_points_at_the_endpoint_name() -> None:
    text = make(upstream=Upstream(host="db.internal.example", dbname="app", port=6543, alias="pooled")).render_ini()
    databases = text.split("[databases]\n", 1)[1].split("\n\n", 1)[0]
    assert databases == "pooled = host=db.internal.example port=6543 dbname=app"


def test_ini_holds_no_password() -> None:
    text = make().render_ini()
    assert_no_secret("password", text.lower())


# -- version awareness --------------------------------------------------------------------


def test_pinned_renders_max_prepared_statements_and_debian_does_not() -> None:
    assert ini_pairs(make(version=PINNED).render_ini())["max_prepared_statements"] == "200"
    assert "max_prepared_statements" not in ini_pairs(make(version=DEBIAN_BOOKWORM).render_ini())


def test_prepared_statements_are_tracked_only_by_releases_and_settings_that_do() -> None:
    assert make(version=PINNED).tracks_prepared_statements
    assert not make(version=PINNED, max_prepared_statements=0).tracks_prepared_statements
    assert not make(version=DEBIAN_BOOKWORM).tracks_prepared_statements  # 1.18 has no such setting


@pytest.mark.parametrize("version", [DEBIAN_BOOKWORM, "1.21.0", "1.23.1", PINNED])
def test_every_rendered_key_is_known_to_the_target_version(version: str) -> None:
    settings = make(version=version, pidfile="/run/pgbouncer/p.pid", logfile="/run/pgbouncer/p.log",
                    admin_users=("admin",), stats_users=("stats",), so_reuseport=True)
    parsed = PgBouncerVersion.parse(version)
    rejected = [key for key in ini_pairs(settings.render_ini()) if not parsed.accepts(key)]
    assert rejected == []


def test_versions_table_tracks_added_and_removed_keys() -> None:
    old, pinned = PgBouncerVersion.parse(DEBIAN_BOOKWORM), PgBouncerVersion.parse(PINNED)
    assert not old.accepts("max_prepared_statements") and pinned.accepts("max_prepared_statements")
    assert pinned.accepts("max_db_client_connections") and not PgBouncerVersion.parse("1.23.1").accepts(
        "max_db_client_connections"
    )
    # Removed in 1.26 with online restart: 1.25 still takes it, the pinned 1.26.1 dies on it.
    assert old.accepts("suspend_timeout") and PgBouncerVersion.parse("1.25.2").accepts("suspend_timeout")
    assert not pinned.accepts("suspend_timeout")
    assert pinned.accepts("transaction_timeout") and not PgBouncerVersion.parse("1.24.1").accepts("transaction_timeout")
    assert not old.accepts("no_such_setting")
    # 1.23 made SIGTERM wait for every client (test_real_pgbouncer checks which behaviour it gets).
    assert not old.at_least(1, 23) and pinned.at_least(1, 23)


def test_version_parses_pgbouncer_version_output() -> None:
    assert str(PgBouncerVersion.parse("PgBouncer 1.18.0\nlibevent 2.1.12-stable")) == "1.18.0"
    assert str(PgBouncerVersion.parse("1.24")) == "1.24.0"


@pytest.mark.parametrize("text", ["1.17.1", "1.27.0", "2.0"])
def test_versions_outside_the_checked_tables_are_refused(text: str) -> None:
    # A later release may add and remove keys the table does not list: refuse rather than guess.
    with pytest.raises(ValueError, match=r"use a release from 1\.18 to 1\.26"):
        PgBouncerVersion.parse(text)


def test_extra_key_unknown_to_the_version_is_refused() -> None:
    # max_db_client_connections arrived in 1.24: fine for the image, fatal for Debian 12's 1.18.
    pairs = ini_pairs(make(extra={"max_db_client_connections": "30"}).render_ini())
    assert pairs["max_db_client_connections"] == "30"
    with pytest.raises(
        SettingsError, match=r"PgBouncer 1\.18\.0 does not know the setting 'max_db_client_connections'"
    ):
        make(version=DEBIAN_BOOKWORM, extra={"max_db_client_connections": "30"})
    with pytest.raises(SettingsError, match="does not know the setting 'suspend_timeout'"):
        make(extra={"suspend_timeout": "30"})  # removed in 1.26
    with pytest.raises(SettingsError, match="does not know the setting 'no_such_setting'"):
        make(extra={"no_such_setting": "1"})


def test_extra_key_that_is_a_typed_field_is_refused() -> None:
    with pytest.raises(SettingsError, match="'pool_mode' is a typed setting"):
        make(extra={"pool_mode": "session"})
    # Rendered from max_db_connections: a second line would let the active login role take every server.
    with pytest.raises(SettingsError, match="'max_user_connections' is a typed setting"):
        make(extra={"max_user_connections": "100"})


def test_extra_key_known_to_the_version_is_rendered() -> None:
    settings = make(version=DEBIAN_BOOKWORM, extra={"query_timeout": "0", "server_round_robin": "0"})
    pairs = ini_pairs(settings.render_ini())
    assert pairs["query_timeout"] == "0"
    assert pairs["server_round_robin"] == "0"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upstream": Upstream(host="db.internal\n", dbname="app")}, r"upstream host 'db.internal\\n' is not"),
        ({"upstream": Upstream(host="/var/run/postgresql\n", dbname="app")}, "is not a host name"),
        ({"upstream": Upstream(host="db", dbname="app\n")}, r"database name 'app\\n' must be letters"),
        ({"upstream": Upstream(host="db", dbname="app", alias="pooled\n")}, r"database name 'pooled\\n'"),
        ({"stats_users": ("stats\n",)}, r"console user name 'stats\\n' must be letters"),
        ({"admin_users": ("admin\n",)}, r"console user name 'admin\\n' must be letters"),
    ],
)
def test_a_trailing_newline_in_a_name_or_host_is_refused(overrides: dict[str, Any], message: str) -> None:
    # A '$' anchor lets "name\n" through, and the rendered ini would then hold a split line.
    with pytest.raises(SettingsError, match=message):
        make(**overrides)


def test_the_databases_line_is_checked_like_every_other_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even if a name pattern let a line break through, the [databases] line is refused, not rendered.
    monkeypatch.setattr(settings, "_HOST", re.compile(r"[\s\S]+"))
    with pytest.raises(SettingsError, match=r"\[databases\] entry 'app' contains a line break"):
        make(upstream=Upstream(host="db\nauth_type = trust", dbname="app"))


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_idle_timeout": NLB_IDLE_TIMEOUT_S}, "client_idle_timeout must be between 1 and 349.*the NLB"),
        ({"client_idle_timeout": 600}, "client_idle_timeout must be between 1 and 349"),
        ({"client_idle_timeout": -1}, "client_idle_timeout must be between 1 and 349"),
        ({"tcp_keepidle": 400}, "tcp_keepidle must be between 1 and 349"),
        ({"client_tls_sslmode": "verify-ca"}, "would demand client certificates"),
        ({"client_tls_sslmode": "verify-full"}, "would demand client certificates"),
        ({"server_tls_ca_file": ""}, "server_tls_sslmode=verify-full needs server_tls_ca_file"),
        ({"server_tls_sslmode": "verify-ca", "server_tls_ca_file": ""}, "verify-ca needs server_tls_ca_file"),
        ({"server_tls_sslmode": "required"}, "server_tls_sslmode must be one of"),
        ({"client_tls_cert_file": ""}, "client TLS needs client_tls_cert_file"),
        ({"default_pool_size": 0}, "default_pool_size must be at least 1"),
        ({"default_pool_size": -3}, "default_pool_size must be at least 1"),
        ({"max_client_conn": 0}, "max_client_conn must be at least 1"),
        ({"max_db_connections": 5}, "max_db_connections must be 0 or at least default_pool_size"),
        ({"pool_mode": "transactions"}, "pool_mode must be session, transaction or statement"),
        ({"listen_port": 0}, "listen_port must be between 1 and 65535"),
        ({"listen_port": 70000}, "listen_port must be between 1 and 65535"),
        ({"upstream": Upstream(host="h", dbname="app", port=0)}, "upstream port must be between"),
        ({"upstream": Upstream(host="h", dbname="app db")}, "database name 'app db' must be letters"),
        ({"upstream": Upstream(host="h", dbname="1app")}, "database name '1app' must be letters"),
        ({"upstream": Upstream(host="h", dbname="app", alias="a;b")}, "database name 'a;b' must be letters"),
        ({"upstream": Upstream(host="h", dbname="x" * 64)}, "must be letters"),
        ({"upstream": Upstream(host="bad host", dbname="app")}, "upstream host 'bad host' is not a host name"),
        ({"upstream": Upstream(host="h port=1", dbname="app")}, "is not a host name"),
        ({"admin_users": ("ok", "not ok")}, "console user name 'not ok' must be letters"),
        ({"stats_users": ("x=y",)}, "console user name 'x=y'"),
        ({"version": "latest"}, "version: cannot read a PgBouncer version"),
        ({"version": "1.17.0"}, "version: PgBouncer 1.17.0 is not supported"),
        ({"listen_addr": "0.0.0.0\nauth_type = trust"}, "setting listen_addr contains a line break"),
        ({"ignore_startup_parameters": ("extra_float_digits\nauth_type = any",)}, "contains a line break"),
        ({"extra": {"query_timeout": "0\r"}}, "setting query_timeout contains a line break"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_the_knob(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("?", r"\?")):
        make(**overrides)


# Each typed number with a value PgBouncer refuses ("cannot load config file": a crash loop on
# ECS), or accepts with a meaning that breaks the service (issue #14, items 4 and 5).
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # 0 means "never": idle clients would outlive the NLB's 350 s and be dropped silently.
        ("client_idle_timeout", 0, "client_idle_timeout must be between 1 and 349"),
        # 0 means "the kernel default" (2 hours), far beyond the NLB's idle window.
        ("tcp_keepidle", 0, "tcp_keepidle must be between 1 and 349"),
        ("tcp_keepidle", -1, "tcp_keepidle must be between 1 and 349"),
        ("server_connect_timeout", 0, "server_connect_timeout must be at least 1"),
        ("server_connect_timeout", -5, "server_connect_timeout must be at least 1"),
        ("idle_transaction_timeout", -1, "idle_transaction_timeout must be at least 0"),
        ("query_wait_timeout", -1, "query_wait_timeout must be at least 0"),
        ("client_login_timeout", -1, "client_login_timeout must be at least 0"),
        ("server_login_retry", -1, "server_login_retry must be at least 0"),
        ("server_idle_timeout", -1, "server_idle_timeout must be at least 0"),
        ("server_lifetime", -1, "server_lifetime must be at least 0"),
        ("dns_max_ttl", -1, "dns_max_ttl must be at least 0"),
        ("listen_backlog", -1, "listen_backlog must be between 1 and 65535"),
        ("listen_backlog", 0, "listen_backlog must be between 1 and 65535"),
        ("reserve_pool_size", -1, "reserve_pool_size must be at least 0"),
        ("max_db_connections", -1, "max_db_connections must be at least 0"),
        ("tcp_keepcnt", -1, "tcp_keepcnt must be between 0 and 127"),
        ("tcp_keepcnt", 128, "tcp_keepcnt must be between 0 and 127"),
        ("tcp_keepintvl", -1, "tcp_keepintvl must be between 0 and 32767"),
        ("stats_period", 0, "stats_period must be at least 1"),
        ("max_prepared_statements", -1, "max_prepared_statements must be at least 0"),
        ("server_lifetime", 2**31, "server_lifetime must be at most 2147483647"),
    ],
)
def test_numbers_outside_their_real_bounds_are_refused(field: str, value: int, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        make(**{field: value})
    assert f"got {value}" in str(info.value)


def test_keepidle_zero_is_fine_when_keepalive_is_off() -> None:
    # Without keepalive PgBouncer never sets the timer: 0 is its "unset".
    assert ini_pairs(make(tcp_keepalive=False, tcp_keepidle=0).render_ini())["tcp_keepalive"] == "0"


@pytest.mark.parametrize("auth_type", ["scram", "SCRAM-SHA-256", "password", "ldap", "pam", "cert", ""])
def test_unknown_auth_types_are_refused(auth_type: str) -> None:
    with pytest.raises(SettingsError, match="auth_type must be one of scram-sha-256, md5, hba"):
        make(auth_type=auth_type)


def test_hba_auth_needs_its_file() -> None:
    with pytest.raises(SettingsError, match="auth_type hba needs extra="):
        make(auth_type="hba")
    pairs = ini_pairs(make(auth_type="hba", extra={"auth_hba_file": "/run/pgbouncer/hba.conf"}).render_ini())
    assert pairs["auth_type"] == "hba"


@pytest.mark.parametrize("auth_type", ["trust", "any", "plain"])
def test_auth_types_that_skip_or_weaken_the_password_check_are_refused(auth_type: str) -> None:
    with pytest.raises(SettingsError, match=f"auth_type {auth_type} "):
        make(auth_type=auth_type)


def test_sizing_helpers() -> None:
    settings = make(max_client_conn=1000, default_pool_size=8, reserve_pool_size=2)
    assert settings.effective_max_db_connections == 10
    assert settings.required_open_files() == 1000 + 10 + 32
    assert settings.required_open_files(pools=3) == 1000 + 30 + 32


# -- JSON transport -----------------------------------------------------------------------


def test_json_round_trip_keeps_every_field() -> None:
    settings = make(
        upstream=Upstream(host="db.example.com", dbname="app", port=5433, alias="pooled"),
        version=DEBIAN_BOOKWORM,
        admin_users=("admin",),
        stats_users=("stats", "metrics"),
        ignore_startup_parameters=("extra_float_digits", "options"),
        tcp_keepalive=False,
        client_idle_timeout=120,
        extra={"query_timeout": "30"},
    )
    again = PoolerSettings.from_json(settings.to_json())
    assert again == settings
    assert again.render_ini() == settings.render_ini()
    # Every field survives, not only the ones that differ from the defaults.
    assert set(json.loads(settings.to_json())) == {f.name for f in dataclasses.fields(PoolerSettings)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"default_pool_size": 5}', "need 'upstream' and 'default_pool_size'"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": 5, "pool_size": 5}',
         "unknown pooler settings: pool_size"),
        ('{"upstream": "h", "default_pool_size": 5}', "upstream must be an object"),
        ('{"upstream": {"host": "h"}, "default_pool_size": 5}', "upstream needs dbname"),
        ('{"upstream": {"host": "h", "dbname": "d", "db": "x"}, "default_pool_size": 5}',
         "unknown upstream settings: db"),
        ('{"upstream": {"host": "h", "dbname": "d", "port": "5432"}, "default_pool_size": 5}',
         "upstream.port must be a whole number, got str"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": "5"}',
         "default_pool_size must be a whole number, got str"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": true}',
         "default_pool_size must be a whole number, got bool"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": 5, "tcp_keepalive": 1}',
         "tcp_keepalive must be true or false"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": 5, "admin_users": "a,b"}',
         "admin_users must be a list of strings"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": 5, "extra": {"query_timeout": 0}}',
         "extra must be an object of string values"),
        ('{"upstream": {"host": "h", "dbname": "d"}, "default_pool_size": 0}', "default_pool_size must be at least 1"),
    ],
)
def test_bad_json_is_refused_with_a_message_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        PoolerSettings.from_json(text)


# -- userlist.txt -------------------------------------------------------------------------


def test_userlist_quotes_double_quotes_and_keeps_everything_else_literal() -> None:
    assert render_userlist({"app": 'a"b'}) == '"app" "a""b"\n'
    every = string.punctuation + " ünï密🔑"
    assert render_userlist({"app": every}) == '"app" "' + every.replace('"', '""') + '"\n'
    assert render_userlist({"a": "x", "b": "y"}) == '"a" "x"\n"b" "y"\n'


@pytest.mark.parametrize("control", ["\n", "\r", "\0", "\t", "\x07", "\x1b", "\x7f"])
def test_userlist_refuses_control_characters_without_echoing_the_password(control: str) -> None:
    secret = f"Sup3r-s3cret{control}value"
    with pytest.raises(SettingsError) as info:
        render_userlist({"app": secret})
    message = str(info.value)
    assert "line break or control character" in message
    assert "Sup3r" not in message and "value" not in message


def test_userlist_refuses_md5_hashes_which_scram_logins_cannot_use() -> None:
    hashed = "md5" + "0123456789abcdef" * 2
    with pytest.raises(SettingsError, match="looks like an md5 hash") as info:
        render_userlist({"app": hashed})
    assert hashed not in str(info.value)


def test_userlist_holds_a_scram_verifier_as_given() -> None:
    verifier = scram_verifier("pw", b"0123456789abcdef")
    assert render_userlist({"app": verifier, "stats": "plain"}) == f'"app" "{verifier}"\n"stats" "plain"\n'


@pytest.mark.parametrize(
    "broken",
    [
        "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",  # keys too short
        "SCRAM-SHA-256$0:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",  # no iterations
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=",  # no ServerKey
        "SCRAM-SHA-256$4096:!!!!$" + "A" * 43 + "=:" + "A" * 43 + "=",  # not base64
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=trailing",
    ],
)
def test_userlist_refuses_verifiers_pgbouncer_cannot_parse(broken: str) -> None:
    with pytest.raises(SettingsError, match="SCRAM verifier for pooler user 'app' is malformed") as info:
        render_userlist({"app": broken})
    assert broken not in str(info.value)


def test_userlist_accepts_md5_prefix_that_is_not_a_hash() -> None:
    # PgBouncer only reads md5 + 32 lowercase hex digits as a hash (the real binary logs in with
    # this one: test_real_pgbouncer.py).
    for password in ("md5" + "z" * 32, "md5" + "0123456789ABCDEF" * 2):
        assert render_userlist({"app": password}) == f'"app" "{password}"\n'


def test_userlist_refuses_passwords_pgbouncer_cannot_read() -> None:
    render_userlist({"app": "p" * MAX_PASSWORD_BYTES})
    with pytest.raises(SettingsError, match=f"longer than {MAX_PASSWORD_BYTES} bytes"):
        render_userlist({"app": "p" * (MAX_PASSWORD_BYTES + 1)})
    # Bytes, not characters: PgBouncer's buffer is a C string.
    with pytest.raises(SettingsError, match="longer than"):
        render_userlist({"app": "é" * (MAX_PASSWORD_BYTES // 2 + 1)})
    with pytest.raises(SettingsError, match="not valid Unicode"):
        render_userlist({"app": "half a surrogate \ud800"})


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({}, "needs at least one user"),
        ({"": "pw"}, "user name is empty"),
        ({"app": ""}, "password for pooler user 'app' is empty"),
        ({"app\n": "pw"}, "the user name for pooler user #1 contains a line break"),
    ],
)
def test_userlist_refuses_empty_or_broken_entries(credentials: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        render_userlist(credentials)


def test_query_wait_notify_is_rendered_where_the_release_knows_it() -> None:
    """1.25+ sends a queued client a NOTICE after query_wait_notify seconds; 1.18 would die on the key."""
    assert ini_pairs(make().render_ini())["query_wait_notify"] == "5"
    assert "query_wait_notify" not in ini_pairs(make(version=DEBIAN_BOOKWORM).render_ini())
    with pytest.raises(SettingsError, match="query_wait_notify"):
        make(query_wait_notify=-1)
