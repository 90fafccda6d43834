"""The stack-issued certificate reaching PgBouncer: ``POOLER_TLS_CERT``/``POOLER_TLS_KEY`` in the entrypoint."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from pathlib import Path

import pytest

from pgbouncer.contract import CERT_ENV, CREDENTIALS_ENV, KEY_ENV, SETTINGS_ENV
from pgbouncer.entrypoint import main
from pgbouncer.tls import (
    CertificateError,
    CertPair,
    issue_server_certificate,
    write_authority,
)
from tests.pgbouncer.test_entrypoint import SECRET, exec_calls, settings_in  # noqa: F401 (exec_calls: fixture)


@pytest.fixture
def authority(tmp_path: Path) -> CertPair:
    pair = CertPair(tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key")
    write_authority(pair, "test pooler CA")
    return pair


def test_an_issued_certificate_verifies_against_its_ca_for_its_names(tmp_path: Path, authority: CertPair) -> None:
    issued = issue_server_certificate(authority, ("pooler.example.internal", "127.0.0.1"))
    leaf = issued.check()
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < dt.timedelta(days=398)
    # Python's own verifier (OpenSSL), as a client would run it: chain and hostname.
    context = ssl.create_default_context(cafile=str(authority.cert_file))
    pair = CertPair(tmp_path / "srv" / "server.crt", tmp_path / "srv" / "server.key")
    issued.write(pair)
    assert stat.S_IMODE(pair.key_file.stat().st_mode) == 0o600
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pair.cert_file, pair.key_file)
    for name in ("pooler.example.internal", "127.0.0.1"):
        _handshake(context, server, name)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
        _handshake(context, server, "impostor.example.internal")


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, name: str) -> None:
    client_in, client_out, server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(client_in, client_out, server_hostname=name)
    s = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        done = True
        for end, outbox, peer_inbox in ((c, client_out, server_in), (s, server_out, client_in)):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            data = outbox.read()
            if data:
                peer_inbox.write(data)
        if done:
            return
    raise AssertionError("handshake did not finish")


def test_main_writes_the_given_pair_over_a_stale_one_and_drops_the_key_from_the_environment(
    tmp_path: Path, authority: CertPair, exec_calls: list[tuple[str, list[str]]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_in(tmp_path)
    (tmp_path / "tls").mkdir()
    Path(settings.client_tls_cert_file).write_text("stale\n")
    issued = issue_server_certificate(authority, ("localhost",))
    for name, value in {SETTINGS_ENV: settings.to_json(), CREDENTIALS_ENV: SECRET,
                        CERT_ENV: issued.cert_pem, KEY_ENV: issued.key_pem}.items():
        monkeypatch.setenv(name, value)
    main(run_dir=tmp_path)
    assert len(exec_calls) == 1
    assert Path(settings.client_tls_cert_file).read_text() == issued.cert_pem
    assert Path(settings.client_tls_key_file).read_text() == issued.key_pem
    assert KEY_ENV not in os.environ
    err = capsys.readouterr().err
    assert "self-signed" not in err and "PRIVATE KEY" not in err




@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cert only", f"{CERT_ENV} is set but {KEY_ENV} is not"),
        ("key only", f"{KEY_ENV} is set but {CERT_ENV} is not"),
        ("other key", f"{KEY_ENV} is not the private key of the certificate"),
        ("not pem", f"{CERT_ENV} is not a PEM certificate"),
        ("bad key", f"{KEY_ENV} is not an unencrypted PEM private key"),
    ],
)
def test_main_refuses_a_pair_it_cannot_serve(
    tmp_path: Path, authority: CertPair, exec_calls: list[tuple[str, list[str]]],  # noqa: F811
    capsys: pytest.CaptureFixture[str], case: str, message: str,
) -> None:
    issued = issue_server_certificate(authority, ("localhost",))
    other = issue_server_certificate(authority, ("localhost",))
    pair = {
        "cert only": {CERT_ENV: issued.cert_pem},
        "key only": {KEY_ENV: issued.key_pem},
        "other key": {CERT_ENV: issued.cert_pem, KEY_ENV: other.key_pem},
        "not pem": {CERT_ENV: "hello", KEY_ENV: issued.key_pem},
        "bad key": {CERT_ENV: issued.cert_pem, KEY_ENV: "not a key"},
    }[case]
    env = {SETTINGS_ENV: settings_in(tmp_path).to_json(), CREDENTIALS_ENV: SECRET, **pair}
    with pytest.raises(SystemExit) as info:
        main(env, run_dir=tmp_path)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "PRIVATE KEY" not in err
    assert exec_calls == []


def test_an_expired_certificate_is_refused_with_its_dates(authority: CertPair) -> None:
    issued = issue_server_certificate(authority, ("localhost",), days=30)
    issued.check(dt.datetime.now(dt.UTC) + dt.timedelta(days=29))
    with pytest.raises(CertificateError, match="not now; issue a new one"):
        issued.check(dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
