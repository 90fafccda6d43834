"""A local PgBouncer process, configured by the very renderer and entrypoint logic the image runs.

The image's entrypoint renders and then ``exec``s PgBouncer; here we render with the same
:func:`pgbouncer.entrypoint.prepare`, check the same open-files rule against the limit we are
about to set, and start PgBouncer as the service user with that limit.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lifeguard.stack.pgbouncer_install import command as pgbouncer_command
from lifeguard.stack.procs import ProcessIdentity, identify, is_running, read_identity, write_identity
from lifeguard.stack.safe_paths import UnsafePathError, read_service_file
from lifeguard.stack.system import (
    debian_pgbouncer,
    find_pgbouncer,
    own_for_service,
    service_argv,
    service_uid,
    write_as_service,
)
from pgbouncer.entrypoint import check_open_files, prepare
from pgbouncer.image_check import installed_release
from pgbouncer.settings import PoolerSettings
from pgbouncer.tls import ServerCertificate
from pgbouncer.versions import PgBouncerVersion

DEFAULT_NOFILE = 20000
RELOAD_LOG_LINE = "got SIGHUP, re-reading config"
"""What PgBouncer logs when a ``SIGHUP`` makes it re-read its ini and ``auth_file``."""
RELOAD_TIMEOUT_S = 10.0


class PoolerError(RuntimeError):
    pass


def installed_version(binary: Path | None = None) -> PgBouncerVersion:
    """The release of ``binary`` (default: :func:`find_pgbouncer`), from ``pgbouncer --version``."""
    return _version_of(binary or find_pgbouncer())


def other_debian_pgbouncer() -> Path | None:
    """Debian's own PgBouncer (12's 1.18), when it is another release than the shipped build: the one the
    benchmarks compare with and the PgBouncer tests run on besides the shipped release."""
    debian = debian_pgbouncer()
    if debian is None or installed_version(debian) == installed_version():
        return None
    return debian


@functools.lru_cache(maxsize=8)
def _version_of(binary: Path) -> PgBouncerVersion:
    return PgBouncerVersion.parse(installed_release(pgbouncer_command(binary)))


def wait_for_port(host: str, port: int, timeout: float, alive: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class PoolerProcess:
    root: Path
    """State directory: ``pgbouncer.ini``, ``userlist.txt``, ``tls/`` and the Unix socket; made afresh by each
    start when the service user owns it. The log and pid record sit beside it (:attr:`log_file`, :attr:`pid_file`)."""
    settings: PoolerSettings
    nofile: int = DEFAULT_NOFILE
    binary: Path | None = None
    """The PgBouncer executable; :func:`find_pgbouncer` (the shipped release) when None."""
    process: subprocess.Popen[bytes] | None = None
    _command: tuple[str, ...] = ()

    @property
    def log_file(self) -> Path:
        """``pgbouncer-1/`` -> ``pgbouncer-1.log`` beside it: written and read by us, in a folder of ours."""
        return self.root.with_name(f"{self.root.name}.log")

    @property
    def pid_file(self) -> Path:
        """Where the identity of the running PgBouncer is recorded: :func:`pid_record_file`."""
        return pid_record_file(self.root)

    def start(
        self,
        credentials: Mapping[str, str],
        timeout: float = 15,
        detach: bool = False,
        certificate: ServerCertificate | None = None,
    ) -> None:
        """Render, check limits, start, and wait until the port accepts connections.

        ``certificate`` is what the image gets as ``POOLER_TLS_CERT``/``POOLER_TLS_KEY``.

        ``detach`` starts PgBouncer in its own session so it outlives this process (``lifeguard
        local up``); otherwise it is our child and stops with :meth:`stop`.
        """
        check_open_files(self.settings, self.nofile)
        self._fresh_root()
        ini = prepare(self.settings, credentials, self.root, certificate)
        own_for_service(self.root)
        # Through Debian 13's loader for the shipped install: the process's argv is this whole list.
        command = [*pgbouncer_command(self.binary or find_pgbouncer()), str(ini)]
        argv = service_argv(command, nofile=self.nofile)
        log = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=detach
            )
        finally:
            os.close(log)
        self._command = tuple(command)
        host = "127.0.0.1" if self.settings.listen_addr in ("0.0.0.0", "*", "") else self.settings.listen_addr  # noqa: S104
        if not wait_for_port(host, self.settings.listen_port, timeout, alive=self.process):
            self.stop(signal.SIGQUIT, timeout=5)
            raise PoolerError(
                f"PgBouncer did not start on port {self.settings.listen_port}:\n{self.log_tail()}"
            )
        self.refresh_pid_file()

    def _pgbouncer_identity(self, timeout: float = 5) -> ProcessIdentity | None:
        """PgBouncer itself: our child, or under ``runuser`` its child once it has exec'd PgBouncer.

        Found by its command line, so neither ``runuser`` nor the shell before its ``exec`` is taken for it.
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            pid: int | None = self.process.pid
            while pid is not None:
                identity = identify(pid)
                if identity is not None and identity.argv == self._command:
                    return identity
                pid = _first_child(pid)
            if time.monotonic() > deadline or self.process.poll() is not None:
                return None
            time.sleep(0.02)

    def refresh_pid_file(self) -> int:
        """Record PgBouncer's identity (pid, start time, executable, command line), once it runs.

        The record sits next to the state folder, not in it: the service user owns that folder
        and could otherwise point the record (and our signals, as root) at any process.
        """
        identity = self._pgbouncer_identity()
        if identity is None:
            raise PoolerError(f"PgBouncer exited right after starting:\n{self.log_tail()}")
        try:
            write_identity(self.pid_file, identity)
        except PermissionError as exc:
            self.stop(signal.SIGQUIT, timeout=5)
            raise PoolerError(f"PgBouncer stopped again: {exc}") from None
        return identity.pid

    def pid(self) -> int | None:
        """PgBouncer's pid while the recorded process is still running; None otherwise (crashed, pid reused)."""
        identity = read_identity(self.pid_file)
        if identity is None or not is_running(identity):
            return None
        return identity.pid

    def _child_pid(self) -> int | None:
        """Our own child (``runuser`` or PgBouncer), while it has not exited: its pid cannot be reused."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def reload_auth_file(self, userlist: str, timeout: float = RELOAD_TIMEOUT_S) -> None:
        """Put ``userlist`` in PgBouncer's ``auth_file`` and have it re-read it (``SIGHUP``), waiting until it did.

        Written as the service user, whose folder it is (root writes nothing there). PgBouncer re-reads
        the file only when its size or mtime (whole seconds) changed, and a new verifier is as long as
        the old one: the mtime is moved on, as that user too. In-flight transactions and connections stay.
        """
        path = Path(self.settings.auth_file)
        moved = max(time.time(), path.stat().st_mtime + 1)
        before = self.log_text().count(RELOAD_LOG_LINE)
        write_as_service(path, userlist)
        touched = subprocess.run(service_argv(["touch", "-h", "-d", f"@{moved:.3f}", "--", str(path)]),
                                 capture_output=True, text=True, check=False)
        if touched.returncode != 0:
            raise PoolerError(f"could not move {path}'s mtime on: {touched.stderr.strip()}")
        self.send_signal(signal.SIGHUP)
        # Asynchronous: wait until this PgBouncer says it re-read its files.
        deadline = time.monotonic() + timeout
        while self.log_text().count(RELOAD_LOG_LINE) <= before:
            if time.monotonic() > deadline:
                raise PoolerError(f"PgBouncer in {self.root} did not reload its auth_file within {timeout:.0f} s")
            time.sleep(0.05)

    def send_signal(self, sig: signal.Signals) -> None:
        pid = self.pid()
        if pid is None:
            raise PoolerError("PgBouncer is not running")
        os.kill(pid, sig)

    def wait(self, timeout: float) -> bool:
        """Wait for PgBouncer to exit; True when it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    return True
            elif self.pid() is None:
                return True
            time.sleep(0.05)
        return False

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> None:
        """Stop with ``sig`` (SIGINT lets in-flight transactions finish), then SIGKILL after ``timeout``."""
        pid = self.pid() or self._child_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if not self.wait(timeout):
                # Checked again: only what is still our PgBouncer (or our own child) gets SIGKILL.
                for target in {p for p in (self.pid(), self._child_pid()) if p is not None}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(target, signal.SIGKILL)
                self.wait(5)
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.pid_file.unlink(missing_ok=True)

    def log_text(self) -> str:
        try:
            return read_service_file(self.log_file, service_uid())
        except (OSError, UnsafePathError):
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fresh_root(self) -> None:
        """Make :attr:`root` ours and empty when the service user (another user) owns it from a former start.

        That user may have left links there (``userlist.txt`` -> ``/etc/shadow``, ``tls`` -> ``/etc``) for
        root's writes to follow; nothing in the folder outlives a start (the log is beside it).
        """
        try:
            info = self.root.lstat()
        except FileNotFoundError:
            self.root.mkdir(parents=True, mode=0o700)
            return
        if info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(self.root)  # removes entries relative to folder descriptors: links are not followed
            else:
                self.root.unlink()
            self.root.mkdir(mode=0o700)


def pid_record_file(root: Path) -> Path:
    """``pgbouncer-1/`` -> ``pgbouncer-1.pid`` beside it, in a folder only we can write."""
    return root.with_name(f"{root.name}.pid")


def _first_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def local_settings(
    root: Path,
    upstream_port: int,
    upstream_ca_file: Path,
    dbname: str,
    listen_port: int,
    default_pool_size: int,
    version: PgBouncerVersion | None = None,
    **overrides: object,
) -> PoolerSettings:
    """Settings for a PgBouncer on this machine: the shipped defaults, with local paths and ports.

    Only what must differ on one machine differs: loopback, state-directory paths, the local
    Postgres as upstream (still ``verify-full``, against the local CA), and the installed version.
    """
    from pgbouncer.settings import Upstream

    fields: dict[str, object] = {
        "upstream": Upstream(host="localhost", port=upstream_port, dbname=dbname),
        "default_pool_size": default_pool_size,
        "version": str(version or installed_version()),
        "listen_addr": "127.0.0.1",
        "listen_port": listen_port,
        "unix_socket_dir": str(root),
        "auth_file": str(root / "userlist.txt"),
        "server_tls_ca_file": str(upstream_ca_file),
        "client_tls_cert_file": str(root / "tls" / "pgbouncer.crt"),
        "client_tls_key_file": str(root / "tls" / "pgbouncer.key"),
    }
    fields.update(overrides)
    return PoolerSettings(**fields)  # type: ignore[arg-type]
