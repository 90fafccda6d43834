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
    assert pairs["ignore_startup_parameters"] == "extra_float_digits"
    assert pairs["log_connections"] == "0"
    assert pairs["log_disconnections"] == "0"
    assert pairs["log_pooler_errors"] == "1"
    assert pairs["auth_type"] == "scram-sha-256"
    assert pairs["auth_file"] == "/run/pgbouncer/userlist.txt"
    # The per-task cap defaults to the pool: a second user cannot double the server budget.
    assert pairs["max_db_connections"] == "20"
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


@pytest.mark.parametrize("version", [DEBIAN_BOOKWORM, "1.21.0", "1.23.1", "1.25.2", PINNED])
def test_every_rendered_key_is_known_to_the_target_version(version: str) -> None:
    settings = make(version=version, pidfile="/run/pgbouncer/p.pid", logfile="/run/pgbouncer/p.log",
                    admin_users=("admin",), stats_users=("stats",), so_reuseport=True)
    parsed = PgBouncerVersion.parse(version)
    rejected = [key for key in ini_pairs(settings.render_ini()) if not parsed.accepts(key)]
    assert rejected == []


def test_versions_table_tracks_added_and_removed_keys() -> None:
    old, pinned = PgBouncerVersion.parse(DEBIAN_BOOKWORM), PgBouncerVersion.parse(PINNED)
    v126 = PgBouncerVersion.parse("1.26.0")
    assert not old.accepts("max_prepared_statements") and pinned.accepts("max_prepared_statements")
    assert v126.accepts("pool_idle_timeout") and not PgBouncerVersion.parse("1.25.2").accepts("pool_idle_timeout")
    assert old.accepts("suspend_timeout") and not v126.accepts("suspend_timeout")  # removed in 1.26
    assert not old.accepts("no_such_setting")
    assert not old.sigterm_waits_for_clients and pinned.sigterm_waits_for_clients


def test_version_parses_pgbouncer_version_output() -> None:
    assert str(PgBouncerVersion.parse("PgBouncer 1.18.0\nlibevent 2.1.12-stable")) == "1.18.0"
    assert str(PgBouncerVersion.parse("1.26")) == "1.26.0"


def test_extra_key_unknown_to_the_version_is_refused() -> None:
    # transaction_timeout arrived in 1.25: fine for 1.25, fatal for the image's 1.24 and Debian 12's 1.18.
    rendered = make(version="1.25.2", extra={"transaction_timeout": "30"}).render_ini()
    assert ini_pairs(rendered)["transaction_timeout"] == "30"
    for version in (PINNED, DEBIAN_BOOKWORM):
        with pytest.raises(SettingsError, match=rf"PgBouncer {re.escape(version)} does not know the setting"):
            make(version=version, extra={"transaction_timeout": "30"})
    with pytest.raises(SettingsError, match="does not know the setting 'no_such_setting'"):
        make(extra={"no_such_setting": "1"})


def test_extra_key_that_is_a_typed_field_is_refused() -> None:
    with pytest.raises(SettingsError, match="'pool_mode' is a typed setting"):
        make(extra={"pool_mode": "session"})


def test_extra_key_known_to_the_version_is_rendered() -> None:
    settings = make(version=DEBIAN_BOOKWORM, extra={"query_timeout": "0", "server_round_robin": "0"})
    pairs = ini_pairs(settings.render_ini())
    assert pairs["query_timeout"] == "0"
    assert pairs["server_round_robin"] == "0"


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_idle_timeout": NLB_IDLE_TIMEOUT_S}, "client_idle_timeout must be below the NLB idle timeout"),
        ({"client_idle_timeout": 600}, "client_idle_timeout must be below the NLB idle timeout"),
        ({"client_idle_timeout": -1}, "client_idle_timeout must be below"),
        ({"tcp_keepidle": 400}, "tcp_keepidle must be below 350"),
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


@pytest.mark.parametrize(
    "hashed",
    [
        "md5" + "0123456789abcdef" * 2,
        "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",
    ],
)
def test_userlist_refuses_passwords_that_look_like_hashes(hashed: str) -> None:
    with pytest.raises(SettingsError, match="looks like an md5 or SCRAM hash") as info:
        render_userlist({"app": hashed})
    assert hashed not in str(info.value)


def test_userlist_accepts_md5_prefix_that_is_not_a_hash() -> None:
    # PgBouncer only reads md5 + 32 lowercase hex digits as a hash (the real binary logs in with
    # this one: test_real_pgbouncer.py).
    render_userlist({"app": "md5" + "z" * 32})
    render_userlist({"app": "md5" + "0123456789ABCDEF" * 2})


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
