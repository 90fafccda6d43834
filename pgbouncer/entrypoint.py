"""The pooler image's entrypoint: render the configuration, check limits, then become PgBouncer.

Kept in Python (not a shell script) so that everything it decides is tested on this machine:
the local stack calls :func:`prepare` and :func:`check_open_files` exactly as the image does.

Environment (the names: :mod:`pgbouncer.contract`):
  LIFEGUARD_PGBOUNCER_SETTINGS  JSON of :class:`pgbouncer.settings.PoolerSettings` (no secrets)
  POOLER_CREDENTIALS            JSON ``{"username": ..., "password": ...}`` from Secrets Manager:
                                the database user clients and PgBouncer log in as; the stack's
                                "password" is that role's SCRAM verifier (SCRAM pass-through)
  POOLER_STATS_CREDENTIALS      optional, same shape: a read-only console user for the metrics
                                sidecar; it must be listed in the settings' ``stats_users``
  POOLER_TLS_CERT, POOLER_TLS_KEY  the certificate PgBouncer presents to clients and its key, issued
                                by the stack's CA for the name clients dial (:mod:`pgbouncer.tls`);
                                without them a mounted pair is kept, else a self-signed one is
                                made, which ``sslmode=verify-full`` clients refuse
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Mapping
from pathlib import Path

from pgbouncer.contract import (
    ALTERNATE_PASSWORD_KEY,
    ALTERNATE_USERNAME_KEY,
    CREDENTIALS_ENV,
    IMAGE_RUN_DIR,
    KEY_ENV,
    SETTINGS_ENV,
    STATS_CREDENTIALS_ENV,
)
from pgbouncer.private_file import write_private
from pgbouncer.settings import PoolerSettings, SettingsError, render_userlist
from pgbouncer.tls import CertificateError, CertPair, ServerCertificate, write_self_signed

SECRET_ENVS = (CREDENTIALS_ENV, STATS_CREDENTIALS_ENV, KEY_ENV)


class StartupError(RuntimeError):
    """PgBouncer must not start; the message says what to change."""


def credentials_from_secret(text: str, variable: str = CREDENTIALS_ENV, *, alternate: bool = False) -> dict[str, str]:
    """Parse a ``{"username", "password"}`` secret held in ``variable``.

    ``alternate``: the secret may also name a second user (``alternate_username``/``alternate_password``:
    the other login role of a password rotation), and then both are returned. Never echoes the secret,
    not even in a parse error.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        expected = '{"username": ..., "password": ...}'
        raise StartupError(f"{variable} is not JSON; expected {expected}") from None
    if not isinstance(data, dict) or not isinstance(data.get("username"), str) or not isinstance(
        data.get("password"), str
    ):
        raise StartupError(f"{variable} must be a JSON object with string 'username' and 'password'")
    users = {data["username"]: data["password"]}
    second = {key: data[key] for key in (ALTERNATE_USERNAME_KEY, ALTERNATE_PASSWORD_KEY) if key in data}
    if not second:
        return users
    if not alternate:
        raise StartupError(f"{variable} may not name a second user ({ALTERNATE_USERNAME_KEY})")
    if len(second) != 2 or not all(isinstance(value, str) and value for value in second.values()):
        raise StartupError(f"{variable} must give both {ALTERNATE_USERNAME_KEY} and {ALTERNATE_PASSWORD_KEY} as "
                           "non-empty strings, or neither")
    if second[ALTERNATE_USERNAME_KEY] in users:
        raise StartupError(f"{variable}'s {ALTERNATE_USERNAME_KEY} must differ from its username")
    return {**users, second[ALTERNATE_USERNAME_KEY]: second[ALTERNATE_PASSWORD_KEY]}


def credentials_from_env(env: Mapping[str, str], settings: PoolerSettings) -> dict[str, str]:
    """Every ``auth_file`` user: the pooler's database user, plus the stats user when one is given.

    The stats user only reaches PgBouncer's admin console, and only with ``SHOW`` rights: it must
    be in ``stats_users`` (a user missing there would be an ordinary login with a password that
    Postgres does not know), and it must not be the database user, whose line it would replace.
    """
    if CREDENTIALS_ENV not in env:
        raise StartupError(f"set {CREDENTIALS_ENV}")
    credentials = credentials_from_secret(env[CREDENTIALS_ENV], alternate=True)
    if STATS_CREDENTIALS_ENV not in env:
        return credentials
    stats = credentials_from_secret(env[STATS_CREDENTIALS_ENV], STATS_CREDENTIALS_ENV)
    [(user, _)] = stats.items()
    if user in credentials:
        raise StartupError(
            f"{STATS_CREDENTIALS_ENV} names the pooler's database user {user!r}; the console needs a user "
            "of its own (one listed in stats_users)"
        )
    if user not in settings.stats_users:
        listed = ", ".join(repr(name) for name in settings.stats_users) or "none"
        raise StartupError(
            f"{STATS_CREDENTIALS_ENV} is for user {user!r}, which the pooler settings do not list in "
            f"stats_users (listed: {listed}); add it to stats_users or unset {STATS_CREDENTIALS_ENV}"
        )
    return {**credentials, **stats}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)


def prepare(
    settings: PoolerSettings,
    credentials: Mapping[str, str],
    run_dir: Path,
    certificate: ServerCertificate | None = None,
) -> Path:
    """Write ``auth_file`` (0600), the client certificate, and the ini; return the ini path.

    ``certificate`` (the stack's, from :meth:`ServerCertificate.from_env`) is checked and written
    over whatever is there. Without one, a mounted pair is kept, and when none is mounted a
    self-signed one is made: encrypted, but no ``verify-full`` client accepts it (said on stderr).
    """
    _write_private(Path(settings.auth_file), render_userlist(credentials))
    if settings.client_tls_sslmode != "disable":
        cert, key = Path(settings.client_tls_cert_file), Path(settings.client_tls_key_file)
        if certificate is not None:
            try:
                certificate.check()
            except CertificateError as exc:
                raise StartupError(str(exc)) from None
            certificate.write(CertPair(cert, key))
        elif not (cert.exists() and key.exists()):
            if cert.parent != key.parent or cert.suffix != ".crt" or key.suffix != ".key":
                raise StartupError(
                    "no client TLS certificate is mounted and the generated one needs cert and key paths "
                    "<dir>/<name>.crt and <dir>/<name>.key"
                )
            print("lifeguard-pgbouncer: no POOLER_TLS_CERT/POOLER_TLS_KEY given: serving a self-signed "
                  "certificate, which sslmode=verify-full clients refuse", file=sys.stderr, flush=True)
            write_self_signed(cert.parent, names=("pgbouncer", "localhost"), stem=cert.stem)
    ini = run_dir / "pgbouncer.ini"
    _write_private(ini, settings.render_ini())
    return ini


def check_open_files(settings: PoolerSettings, soft_limit: int) -> None:
    """Refuse to start when ``max_client_conn`` cannot be served (PgBouncer only logs it)."""
    needed = settings.required_open_files()
    if soft_limit != resource.RLIM_INFINITY and soft_limit < needed:
        raise StartupError(
            f"open-files limit {soft_limit} is below the {needed} that max_client_conn "
            f"{settings.max_client_conn} needs; raise the container's nofile ulimit to at least {needed} "
            "or lower max_client_conn"
        )


def main(env: Mapping[str, str] | None = None, run_dir: Path = Path(IMAGE_RUN_DIR)) -> None:
    env = os.environ if env is None else env
    try:
        if SETTINGS_ENV not in env or CREDENTIALS_ENV not in env:
            raise StartupError(f"set {SETTINGS_ENV} and {CREDENTIALS_ENV}")
        settings = PoolerSettings.from_json(env[SETTINGS_ENV])
        credentials = credentials_from_env(env, settings)
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        check_open_files(settings, soft)
        ini = prepare(settings, credentials, run_dir, ServerCertificate.from_env(env))
    except (StartupError, SettingsError, CertificateError) as exc:
        print(f"lifeguard-pgbouncer: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # The secrets have been written to the 0600 auth_file; do not hand them on to PgBouncer's environment.
    for variable in SECRET_ENVS:
        os.environ.pop(variable, None)
    print(f"lifeguard-pgbouncer: starting PgBouncer {settings.version}, pool_mode={settings.pool_mode}, "
          f"default_pool_size={settings.default_pool_size}, max_client_conn={settings.max_client_conn}",
          file=sys.stderr, flush=True)
    # exec: PgBouncer becomes PID 1 and receives the stop signal (SIGINT) directly.
    os.execvp("pgbouncer", ["pgbouncer", str(ini)])


if __name__ == "__main__":
    main()
