"""A private Docker engine, the base image the Dockerfiles name, and cached image builds.

The image tests and ``lifeguard local up --images`` start an engine of their own rather than use
(or need) a system one: its socket, data root and state all live under one directory, so layers
and base images stay cached between runs and nothing outside that directory is touched. There is
no bridge or iptables: containers use ``--network host``, ``--network none`` or
``--network container:NAME``. Storage is ``overlay2`` where the kernel and filesystem allow it,
else ``vfs``, which runs anywhere but copies the whole filesystem for every layer and container
(measured here: the two images built in 13 minutes on vfs, under 3 on overlay2).

Docker Hub may be unreachable. The base image is then made with ``debootstrap`` from the
machine's own Debian mirror (read from its apt sources, never named here) and imported under the
name the Dockerfiles use, so ``FROM debian:trixie-slim`` builds without a pull.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lifeguard.stack.procs import command_name
from lifeguard.stack.system import LocalSetupError, running_as_root
from pgbouncer.debian_package import PackageError, apt_mirror

BASE_IMAGE = "debian:trixie-slim"
"""What both Dockerfiles start ``FROM``."""
BASE_SUITE = "trixie"
STORAGE_DRIVERS = ("overlay2", "vfs")
DEBIAN_PACKAGES = ("docker.io", "debootstrap")
START_TIMEOUT_S = 60.0
PULL_TIMEOUT_S = 60.0
DEBOOTSTRAP_TIMEOUT_S = 900.0
BUILD_TIMEOUT_S = 1200.0

Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    pass


class EngineError(LocalSetupError):
    """The engine cannot start, build or run something; the message says what to change."""


def install_missing_packages(progress: Progress = no_progress) -> None:
    """``apt-get install`` docker.io and debootstrap when their commands are missing (root only)."""
    missing = [pkg for pkg, command in zip(DEBIAN_PACKAGES, ("dockerd", "debootstrap"), strict=True)
               if shutil.which(command) is None and not Path(f"/usr/sbin/{command}").exists()]
    if not missing:
        return
    if not running_as_root():
        raise LocalSetupError(f"install {' '.join(missing)} (apt-get install {' '.join(missing)}) or run as root")
    progress(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
        if result.returncode != 0:
            raise LocalSetupError(f"{' '.join(command)} failed: {result.stderr.strip()[-1500:]}")


def _find(command: str) -> str:
    found = shutil.which(command) or next(
        (str(p) for p in (Path("/usr/sbin") / command, Path("/usr/bin") / command) if p.exists()), None
    )
    if found is None:
        raise LocalSetupError(f"{command} not found: apt-get install docker.io")
    return found


@dataclass
class DockerEngine:
    """A ``dockerd`` whose socket, data root and exec root are under ``root``."""

    root: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        """The environment a ``docker`` client needs to talk to this engine and no other."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.root / "client")}

    @property
    def client(self) -> str:
        # The client Debian ships with the engine (docker.io): same API version, and its `docker build`
        # needs no buildx plugin. Any other docker on PATH only when that one is missing.
        for candidate in (Path(_find("dockerd")).with_name("docker"), Path("/usr/bin/docker")):
            if candidate.exists():
                return str(candidate)
        return _find("docker")

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run([self.client, "version", "--format", "{{.Server.Version}}"], env=self.env,
                                capture_output=True, text=True, check=False, timeout=30)
        return result.returncode == 0

    def start(self, progress: Progress = no_progress) -> None:
        if not running_as_root():
            raise LocalSetupError("the Docker engine needs root (run as root, e.g. in CI)")
        if self.running():
            return
        self._stop_leftover()
        (self.root / "exec").mkdir(parents=True, exist_ok=True)
        (self.root / "client").mkdir(parents=True, exist_ok=True)
        failures = []
        for driver in STORAGE_DRIVERS:
            progress(f"starting a Docker engine in {self.root} ({driver})")
            try:
                self._start_with(driver)
                return
            except EngineError as exc:
                failures.append(f"{driver}: {exc}")
        raise EngineError("dockerd did not start: " + "; ".join(failures))

    def _start_with(self, driver: str) -> None:
        # One data root per driver: a data root holds the layers of the driver that wrote it.
        data_root = self.root / ("data" if driver == STORAGE_DRIVERS[0] else f"data-{driver}")
        command = [
            _find("dockerd"),
            f"--storage-driver={driver}", "--iptables=false", "--ip6tables=false", "--bridge=none",
            f"--data-root={data_root}", f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.pid_file}", f"--host=unix://{self.socket}",
        ]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise EngineError(f"dockerd exited: {self._log_tail()}")
            if self.running():
                return
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-800:] if self.log_file.exists() else "(no log)"

    def _stop_leftover(self) -> None:
        """A dockerd left by a killed run holds the data root: stop it by its pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        # The file outlives its dockerd (a reboot, a killed run), and the pid may since name another process.
        if command_name(pid) == "dockerd":
            _terminate(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the engine (its containers get their stop signal first) and wait for it to exit."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=30)
            self._process = None
        else:
            self._stop_leftover()
        # dockerd leaves its network namespace bind-mounted; unmounted, the directory can be deleted.
        for namespace in (self.root / "exec" / "netns").glob("*"):
            if os.path.ismount(namespace):
                subprocess.run(["umount", str(namespace)], capture_output=True, check=False, timeout=30)

    # -- client commands ----------------------------------------------------------------

    def docker(self, *args: str, timeout: float = 300, check: bool = True,
               input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine; raises EngineError on failure when ``check``."""
        result = subprocess.run([self.client, *args], env=self.env, capture_output=True, check=False,
                                timeout=timeout, input=input_bytes)
        completed = subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            # A failed build step's own message is in stdout, Docker's summary in stderr.
            raise EngineError(f"docker {args[0]} failed ({completed.returncode}): "
                              f"{completed.stdout.strip()[-2500:]}\n{completed.stderr.strip()[-1000:]}")
        return completed

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False, timeout=60).returncode == 0

    def image_id(self, name: str) -> str:
        return self.docker("image", "inspect", "--format", "{{.Id}}", name, timeout=60).stdout.strip()

    def ensure_base_image(
        self, name: str = BASE_IMAGE, suite: str = BASE_SUITE, progress: Progress = no_progress
    ) -> str:
        """The base image: already here (cached in the data root), else pulled, else made with debootstrap."""
        if self.has_image(name):
            return name
        progress(f"pulling {name}")
        pulled = self.docker("pull", "--quiet", name, check=False, timeout=PULL_TIMEOUT_S)
        if pulled.returncode == 0:
            return name
        progress(f"cannot pull {name} ({pulled.stderr.strip().splitlines()[-1:]}); making it with debootstrap")
        self._debootstrap_import(name, suite, progress)
        return name

    def _debootstrap_import(self, name: str, suite: str, progress: Progress) -> None:
        rootfs = self.root / f"rootfs-{suite}"
        shutil.rmtree(rootfs, ignore_errors=True)
        try:
            mirror = apt_mirror()
        except PackageError as exc:
            raise EngineError(f"debootstrap needs a Debian mirror: {exc}") from None
        result = subprocess.run([_find("debootstrap"), "--variant=minbase", suite, str(rootfs), mirror],
                                capture_output=True, text=True, check=False, timeout=DEBOOTSTRAP_TIMEOUT_S)
        if result.returncode != 0:
            shutil.rmtree(rootfs, ignore_errors=True)
            raise EngineError(f"debootstrap {suite} failed: {(result.stderr or result.stdout).strip()[-2000:]}")
        try:
            # The slim images' apt setting: no package lists or caches kept in layers.
            (rootfs / "var/lib/apt/lists").mkdir(parents=True, exist_ok=True)
            for stale in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                stale.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
            assert tar.stdout is not None
            imported = subprocess.run([self.client, "import", "--change", 'CMD ["bash"]', "-", name], env=self.env,
                                      stdin=tar.stdout, capture_output=True, text=True, check=False, timeout=600)
            tar.stdout.close()
            tar.wait(timeout=60)
            if imported.returncode != 0:
                raise EngineError(f"docker import failed: {imported.stderr.strip()[-1500:]}")
            progress(f"made {name} from Debian {suite} with debootstrap")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)

    def build(self, context: Path, tag: str, build_args: Mapping[str, str] | None = None,
              progress: Progress = no_progress) -> str:
        """``docker build`` ``context`` (its Dockerfile) as ``tag``; cached layers are reused. Returns the id."""
        args = ["build", "--network", "host", "--tag", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        progress(f"building {tag} from {context / 'Dockerfile'}")
        self.docker(*args, str(context), timeout=BUILD_TIMEOUT_S)
        return self.image_id(tag)


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
