"""Running Postgres and PgBouncer as an unprivileged user, with enough open files.

Both refuse to run as root. When we are root (CI, containers) they run as the ``postgres``
system user through ``runuser``, with the open-files limit raised in the same shell, since
that user's default is 1024 and PgBouncer needs one descriptor per client.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from lifeguard.stack.pgbouncer_install import installed_binary
from lifeguard.stack.safe_paths import chown_tree
from pgbouncer.versions import PINNED

SERVICE_USER = "postgres"


class LocalSetupError(RuntimeError):
    """Something missing on the machine; the message says what to install or change."""


def running_as_root() -> bool:
    return os.geteuid() == 0


SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def service_entry() -> pwd.struct_passwd:
    """The service user's passwd entry; a clear error when the postgresql package is missing."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise LocalSetupError(
            f"no '{SERVICE_USER}' system user: install the postgresql package (apt-get install postgresql)"
        ) from None


def service_env(entry: pwd.struct_passwd) -> list[str]:
    """The whole environment Postgres and PgBouncer get from root: nothing of root's own.

    ``runuser`` resets only HOME, SHELL, USER and LOGNAME; root's AWS keys, CI tokens or database
    URLs would otherwise be readable by the service user in ``/proc/PID/environ``.
    """
    return [f"HOME={entry.pw_dir}", f"USER={entry.pw_name}", f"LOGNAME={entry.pw_name}", f"PATH={SERVICE_PATH}",
            "LANG=C.UTF-8"]


def service_argv(argv: list[str], nofile: int | None = None) -> list[str]:
    """Wrap ``argv`` so it runs as the service user with ``ulimit -n nofile`` when we are root."""
    limit = f"ulimit -n {int(nofile)} && " if nofile else ""
    if running_as_root():
        if shutil.which("runuser") is None:
            raise LocalSetupError("runuser is missing: install util-linux")
        entry = service_entry()
        return ["runuser", "-u", SERVICE_USER, "--", "env", "-i", *service_env(entry),
                "bash", "-c", f'{limit}exec "$@"', "lifeguard", *argv]
    if limit:
        return ["bash", "-c", f'{limit}exec "$@"', "lifeguard", *argv]
    return argv


def service_uid() -> int:
    """The uid Postgres and PgBouncer run as: the service user's as root, else ours."""
    return service_entry().pw_uid if running_as_root() else os.geteuid()


def own_for_service(path: Path) -> None:
    """Give ``path`` (recursively, never through a link) to the service user, so the server can write there."""
    if not running_as_root():
        return
    entry = service_entry()
    chown_tree(path, entry.pw_uid, entry.pw_gid)


def write_as_service(path: Path, text: str, *, append: bool = False) -> None:
    """Write ``text`` to ``path`` as the service user, in a folder it owns.

    Root does not write there itself: that user could have put a link at ``path``, or swapped a
    folder above it, to point root's write at any file.
    """
    argv = service_argv(["tee", *(["-a"] if append else []), "--", str(path)])
    result = subprocess.run(argv, input=text, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            check=False)
    if result.returncode != 0:
        raise LocalSetupError(f"could not write {path} as the '{SERVICE_USER}' user: {result.stderr.strip()}")


def find_postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (Debian keeps them off PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists():
            return directory
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise LocalSetupError("PostgreSQL server binaries not found: apt-get install postgresql")


PGBOUNCER_ENV = "LIFEGUARD_PGBOUNCER"


def find_pgbouncer(env: Mapping[str, str] | None = None) -> Path:
    """The PgBouncer local runs use: ``$LIFEGUARD_PGBOUNCER``, else the shipped binary's install.

    That install is the image's very binary (``pgbouncer.versions.SHIPPED_PACKAGE``), run through
    Debian 13's loader (:func:`lifeguard.stack.pgbouncer_install.command`). Not the ``pgbouncer`` on
    PATH: Debian 12's is 1.18, a release that never runs on AWS; the suite tests it on purpose
    (:func:`debian_pgbouncer`).
    """
    env = os.environ if env is None else env
    chosen = env.get(PGBOUNCER_ENV, "").strip()
    if chosen:
        path = Path(chosen)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalSetupError(f"{PGBOUNCER_ENV}={chosen} is not an executable file; point it at a pgbouncer binary")
        return path
    installed = installed_binary(env=env)
    if not installed.exists():
        raise LocalSetupError(
            f"PgBouncer {PINNED} is not installed yet (looked for {installed}): run scripts/install-pgbouncer.sh "
            f"(scripts/bootstrap.sh runs it), or set {PGBOUNCER_ENV} to a pgbouncer binary"
        )
    return installed


def debian_pgbouncer() -> Path | None:
    """The distribution's PgBouncer (``apt-get install pgbouncer``), if installed."""
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    return Path(found) if found else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
