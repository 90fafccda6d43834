"""Issue 31: root never acts on what another local user controls (real Postgres, PgBouncer, ``postgres`` user).

The CLI runs as root beside services that run as ``postgres``: a state directory someone else made,
a link the ``postgres`` user left where root writes or reads, root's environment, the HTTP server
the image builds fetch the CA from. Each case is the attack, run for real.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from lifeguard.cli import main
from lifeguard.stack.containers import serve_on_loopback
from lifeguard.stack.postgres import PostgresCluster, PostgresError
from lifeguard.stack.safe_paths import UnsafePathError
from lifeguard.stack.stack import LocalStack, StackConfig, StackOptions
from lifeguard.stack.system import SERVICE_USER, find_pgbouncer, free_port, own_for_service, running_as_root
from pgbouncer.tls import write_self_signed
from tests.support import exported_env

REPO_ROOT = Path(__file__).resolve().parents[2]
as_root = pytest.mark.skipif(not running_as_root(), reason="the service user is another user only when run as root")


def _up_argv(ports: tuple[int, int], *extra: str, migrate: bool = False) -> list[str]:
    return ["local", "up", "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]),
            *([] if migrate else ["--no-migrate"]), *extra]


def _as_postgres(script: str) -> None:
    subprocess.run(["runuser", "-u", SERVICE_USER, "--", "sh", "-c", script], check=True)


@pytest.fixture
def victim() -> Iterator[Path]:
    """A folder of root's (0700, like /root) holding a file only root may read or write."""
    folder = Path(tempfile.mkdtemp(prefix="lifeguard-victim-"))
    (folder / "secret").write_text("root's own line\n")
    (folder / "secret").chmod(0o600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def nobody_uid() -> int:
    return pwd.getpwnam("nobody").pw_uid


# -- item 0: the default state directory works from a clone in a 0700 folder -----------------------


@as_root
def test_up_works_as_root_from_a_0700_folder_without_widening_it(
    ports: tuple[int, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(tempfile.mkdtemp(prefix="lifeguard-home-"))  # 0700, like /root
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    monkeypatch.chdir(home)  # the default state directory: .lifeguard/ in the working directory
    stack = LocalStack(home / ".lifeguard")
    try:
        assert main(_up_argv(ports, migrate=True)) == 0, capsys.readouterr().err
        assert stat.S_IMODE(home.stat().st_mode) == 0o700  # not widened
        assert stat.S_IMODE((home / ".lifeguard").stat().st_mode) == 0o700
        # What the postgres user needs is in a folder of root's it may pass through, nothing it can write.
        service = stack.service_dir
        assert not service.is_relative_to(home)
        for folder in (service, service.parent):
            info = folder.lstat()
            assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o711
        capsys.readouterr()
        assert main(["local", "env"]) == 0
        values = exported_env(capsys.readouterr().out)
        for name in ("DATABASE_URL", "DATABASE_URL_UNPOOLED"):
            assert Path(str(conninfo_to_dict(values[name])["sslrootcert"])).is_file()
            with psycopg.connect(values[name], prepare_threshold=None, connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        main(["local", "down", "--purge"])
        shutil.rmtree(home, ignore_errors=True)
    assert not stack.service_dir.exists()  # --purge removes both halves


@pytest.fixture
def sudo_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway login user with a 0700 home, as Debian and Ubuntu (0750) make them."""
    name = f"lgsec{os.getpid() % 100000}"
    home = Path(tempfile.mkdtemp(prefix="lifeguard-user-"))
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home / name), "--shell", "/bin/sh", name],
                   check=True)
    entry = pwd.getpwnam(name)
    (home / name).mkdir(mode=0o700)
    os.chown(home / name, entry.pw_uid, entry.pw_gid)
    home.chmod(0o755)
    try:
        yield entry
    finally:
        # The test's own `local down --purge` stopped what it started as this user.
        subprocess.run(["userdel", name], check=False)
        shutil.rmtree(home, ignore_errors=True)


@as_root
def test_up_works_for_a_user_from_a_0700_home(sudo_user: pwd.struct_passwd, ports: tuple[int, int]) -> None:
    clone = Path(sudo_user.pw_dir) / "lifeguard"
    clone.mkdir()
    os.chown(clone, sudo_user.pw_uid, sudo_user.pw_gid)
    # The user's own checkout and virtualenv, as far as this machine allows: the suite's interpreter sits under
    # /root, so the system's Python 3.11 runs this checkout with the virtualenv's packages.
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    system_version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                    text=True, check=True).stdout.strip()
    if system_version != str(sys.version_info[:2]):
        pytest.skip(f"the system's python3 is {system_version}, not the virtualenv's {sys.version_info[:2]}")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": sudo_user.pw_dir, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": f"{REPO_ROOT}:{sysconfig.get_paths()['purelib']}",
           "LIFEGUARD_PGBOUNCER": str(find_pgbouncer())}

    def lifeguard(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", sudo_user.pw_name, "--", python, "-m", "lifeguard.cli", *argv],
                              cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False)

    try:
        up = lifeguard(*_up_argv(ports, migrate=True))
        assert up.returncode == 0, up.stderr
        assert stat.S_IMODE(Path(sudo_user.pw_dir).stat().st_mode) == 0o700
        printed = lifeguard("local", "env")
        assert printed.returncode == 0, printed.stderr
        printed_env = exported_env(printed.stdout)
        urls = [printed_env["DATABASE_URL"], printed_env["DATABASE_URL_UNPOOLED"]]
        # The user's own stack, in the user's own folder; the client (as that user) connects through both URLs.
        check = "import psycopg, sys\nfor url in sys.argv[1:]:\n    psycopg.connect(url, connect_timeout=10).close()\n"
        connected = subprocess.run(["runuser", "-u", sudo_user.pw_name, "--", python, "-c", check, *urls],
                                   env=env, capture_output=True, text=True, timeout=60, check=False)
        assert connected.returncode == 0, connected.stderr
    finally:
        lifeguard("local", "down", "--purge")


@as_root
def test_a_stack_made_by_an_earlier_lifeguard_as_root_is_asked_to_be_purged(
    stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    # Earlier releases kept the cluster inside the state directory; `down` still finds it there.
    stack_dir.mkdir(mode=0o711)
    (stack_dir / "postgres").mkdir()
    options = StackOptions(pg_port=ports[0], pooler_port=ports[1])
    (stack_dir / "stack.json").write_text(StackConfig.create(options).to_json())
    stack = LocalStack(stack_dir)
    assert stack.service_dir == stack_dir and stack.cluster(stack.require_config()).root == stack_dir / "postgres"
    assert main([*_up_argv(ports), "--state-dir", str(stack_dir)]) == 1
    assert "run `lifeguard local down --purge`" in capsys.readouterr().err
    assert main(["local", "down", "--purge", "--state-dir", str(stack_dir)]) == 0
    assert not stack_dir.exists()


# -- item 1: a state directory another user made -----------------------------------------------------


def _plant_state_dir(state_root: Path, owner: int) -> tuple[Path, Path]:
    """What another local user leaves for root: a 0777 state directory naming their own 'pgbouncer'."""
    planted = state_root / "planted"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    marker = state_root / "ran-as-root"
    binary = planted / "x"
    binary.write_text(f"#!/bin/sh\ntouch {marker}\necho 'PgBouncer 1.24.1'\n")
    binary.chmod(0o755)
    (planted / "stack.json").write_text(json.dumps({"version": 2, "pgbouncer": str(binary)}))
    (planted / "tls").mkdir()
    (planted / "tls" / "pooler-ca.crt").write_text("their CA\n")
    for path in (planted, binary, planted / "stack.json", planted / "tls", planted / "tls" / "pooler-ca.crt"):
        os.chown(path, owner, -1)
    return planted, marker


@as_root
@pytest.mark.parametrize("command", [["local", "up"], ["local", "status"], ["local", "env"], ["local", "down"]])
def test_root_refuses_a_state_directory_another_user_made(
    state_root: Path, ports: tuple[int, int], nobody_uid: int, command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted, marker = _plant(state_root, nobody_uid)
    # As the reproduction: `up` with the stored (default) ports, so the planted stack.json applies.
    argv = [*command, "--state-dir", str(planted), *(["--no-migrate"] if command == ["local", "up"] else [])]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert not marker.exists()  # their program never ran as root
    assert f"{planted} belongs to uid {nobody_uid}" in err and "/var/tmp" not in err
    assert stat.S_IMODE(planted.stat().st_mode) == 0o777 and planted.stat().st_uid == nobody_uid  # left alone


_planted_counter = iter(range(10**6))


def _plant(state_root: Path, owner: int) -> tuple[Path, Path]:
    parent = state_root / f"plant-{next(_planted_counter)}-{os.getpid()}"
    parent.mkdir()
    return _plant_state_dir(parent, owner)


@as_root
def test_root_does_not_run_a_binary_stack_json_names_from_a_folder_others_may_write(state_root: Path) -> None:
    folder = state_root / f"bin-{os.getpid()}"
    folder.mkdir()
    folder.chmod(0o777)
    binary = folder / "x"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    with pytest.raises(UnsafePathError, match="another user could replace it"):
        StackConfig.from_json(json.dumps({"version": 2, "pgbouncer": str(binary)}), folder / "stack.json")


def test_a_symlinked_state_directory_is_refused_and_its_target_left_alone(
    state_root: Path, victim: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    link = state_root / f"link-{ports[0]}"
    link.symlink_to(victim)
    assert main([*_up_argv(ports), "--state-dir", str(link)]) == 1
    assert "is not a folder (a symlink" in capsys.readouterr().err
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700 and sorted(p.name for p in victim.iterdir()) == ["secret"]


def test_a_dangling_stack_json_link_is_not_followed(
    state_root: Path, victim: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    state = state_root / f"dangling-{ports[0]}"
    state.mkdir(mode=0o700)
    (state / "stack.json").symlink_to(victim / "created-by-root")
    assert main([*_up_argv(ports), "--state-dir", str(state)]) == 1
    capsys.readouterr()
    assert not (victim / "created-by-root").exists()


@as_root
def test_bench_refuses_a_state_directory_another_user_made(
    state_root: Path, nobody_uid: int, capsys: pytest.CaptureFixture[str]
) -> None:
    planted, _ = _plant(state_root, nobody_uid)
    out = state_root / f"bench-out-{os.getpid()}"
    assert main(["bench", "--state-dir", str(planted), "--out", str(out), "--levels", "10"]) == 1
    err = capsys.readouterr().err
    assert f"{planted} belongs to uid {nobody_uid}" in err and "/var/tmp" not in err
    assert stat.S_IMODE(planted.stat().st_mode) == 0o777


# -- item 2: links the postgres user leaves where root writes, reads or chowns ---------------------------


@as_root
def test_links_in_pgbouncers_folder_do_not_reach_root_files(
    stack_dir: Path, ports: tuple[int, int], victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_up_argv(ports), "--state-dir", str(stack_dir)]) == 0
    stack = LocalStack(stack_dir)
    pooler = stack.pooler_root(1)
    assert main(["local", "down", "--state-dir", str(stack_dir)]) == 0
    # As the postgres user, who owns PgBouncer's folder: links where root writes the auth_file, the ini,
    # the log and the TLS pair.
    secret = victim / "secret"
    _as_postgres(
        f"cd {shlex.quote(str(pooler))} && ln -sf {shlex.quote(str(secret))} userlist.txt && "
        f"ln -sf {shlex.quote(str(secret))} pgbouncer.ini && ln -sf {shlex.quote(str(secret))} pgbouncer.log && "
        f"rm -rf tls && ln -s {shlex.quote(str(victim))} tls"
    )
    capsys.readouterr()
    code = main([*_up_argv(ports), "--state-dir", str(stack_dir)])
    assert secret.read_text() == "root's own line\n"
    assert sorted(p.name for p in victim.iterdir()) == ["secret"]
    assert secret.stat().st_uid == 0 and stat.S_IMODE(victim.stat().st_mode) == 0o700
    assert code == 0, capsys.readouterr().err
    assert LocalStack(stack_dir).status().up


@as_root
def test_a_leftover_cluster_folder_cannot_point_initdb_writes_elsewhere(state_root: Path, victim: Path) -> None:
    root = state_root / f"leftover-{os.getpid()}"
    root.mkdir()
    own_for_service(root)
    # A failed init left the folder to the postgres user, who links tls/ to a folder of root's.
    _as_postgres(f"ln -s {shlex.quote(str(victim))} {shlex.quote(str(root / 'tls'))}")
    cluster = PostgresCluster(root=root, port=free_port(), durable=False)
    try:
        cluster.init()
        assert sorted(p.name for p in victim.iterdir()) == ["secret"]
        assert (root / "tls").is_dir() and not (root / "tls").is_symlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_data_folder_with_files_but_no_cluster_is_not_deleted(state_root: Path) -> None:
    root = state_root / f"half-{os.getpid()}"
    (root / "data").mkdir(parents=True)
    (root / "data" / "keep-me").write_text("someone's files\n")
    with pytest.raises(PostgresError, match="holds files but no cluster"):
        PostgresCluster(root=root, port=free_port(), durable=False).init()
    assert (root / "data" / "keep-me").read_text() == "someone's files\n"
    shutil.rmtree(root)


@as_root
def test_root_does_not_read_through_a_link_in_the_clusters_folder(state_root: Path, victim: Path) -> None:
    root = state_root / f"readlink-{os.getpid()}"
    cluster = PostgresCluster(root=root, port=free_port(), durable=False)
    try:
        cluster.init()
        # The postgres user swaps the superuser password file (root reads it to log in) for a link to root's secret.
        _as_postgres(f"ln -sf {shlex.quote(str(victim / 'secret'))} {shlex.quote(str(root / 'superuser.password'))}")
        fresh = PostgresCluster(root=root, port=cluster.port)
        with pytest.raises((UnsafePathError, OSError)) as refused:
            _ = fresh.superuser_password
        assert "root's own line" not in str(refused.value)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@as_root
def test_chowning_for_the_service_user_does_not_follow_a_link(state_root: Path, victim: Path) -> None:
    link = state_root / f"chown-{os.getpid()}"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError):
        own_for_service(link)
    assert victim.stat().st_uid == 0 and (victim / "secret").stat().st_uid == 0


# -- item 3: the CA bundle server serves the certificate alone ------------------------------------------


def test_the_ca_server_does_not_serve_the_key_beside_the_certificate(tmp_path: Path) -> None:
    pair = write_self_signed(tmp_path / "tls", names=("localhost",))
    with serve_on_loopback(pair.cert_file, tmp_path / "port") as url:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback server
            assert response.read() == pair.cert_file.read_bytes()
        base = url.rsplit("/", 1)[0]
        for name in (pair.key_file.name, ""):
            try:
                with urllib.request.urlopen(f"{base}/{name}", timeout=10) as response:  # noqa: S310
                    body = response.read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
                continue
            assert b"PRIVATE KEY" not in body and pair.key_file.name.encode() not in body


# -- item 4: root's environment stays root's ---------------------------------------------------------------


def _environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


@as_root
def test_roots_environment_does_not_reach_postgres_or_pgbouncer(
    stack_dir: Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "LIFEGUARD_ROOT_ONLY_MARKER"
    monkeypatch.setenv(marker, "root-secret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "root-secret-value")
    assert main([*_up_argv(ports), "--state-dir", str(stack_dir)]) == 0
    stack = LocalStack(stack_dir)
    config = stack.require_config()
    postmaster = stack.cluster(config).postmaster_pid()
    pgbouncer = stack.pooler_pid(1)
    assert postmaster is not None and pgbouncer is not None
    for pid in (postmaster, pgbouncer):
        environ = _environ(pid)
        assert not any(b"root-secret-value" in entry for entry in environ), pid
        assert any(entry.startswith(b"PATH=") for entry in environ)


def test_a_state_directory_others_may_write_is_refused_with_the_fix(
    state_root: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    shared = state_root / f"group-writable-{ports[0]}"
    shared.mkdir()
    shared.chmod(0o775)
    assert main(["local", "status", "--state-dir", str(shared)]) == 1
    assert f"Run `chmod go-w {shared}`" in capsys.readouterr().err
    shared.chmod(0o755)
    assert main(["local", "status", "--state-dir", str(shared)]) == 3  # now trusted: no stack there yet
