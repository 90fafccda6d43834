"""Process identities from /proc: what the local stack checks before trusting or signalling a pid."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from lifeguard.stack.procs import identify, is_running, read_identity, write_identity


def test_identity_names_the_process_and_survives_a_round_trip(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    with subprocess.Popen(["sleep", "30"]) as proc:
        # Right after fork the child may not have exec'd yet (an empty command line): wait, bounded.
        deadline = time.monotonic() + 10
        identity = identify(proc.pid)
        while identity is not None and not identity.argv and time.monotonic() < deadline:
            time.sleep(0.01)
            identity = identify(proc.pid)
        assert identity is not None
        assert identity.argv == ("sleep", "30") and Path(identity.exe).name.startswith("sleep")
        write_identity(tmp_path / "sleep.pid", identity)
        assert read_identity(tmp_path / "sleep.pid") == identity and is_running(identity)
        proc.kill()
        proc.wait()
    assert identify(identity.pid) is None and not is_running(identity)


def test_a_zombie_is_not_running() -> None:
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    assert identify(proc.pid) is None
    proc.wait()


def test_records_others_could_write_are_neither_written_nor_trusted(tmp_path: Path) -> None:
    identity = identify(os.getpid())
    assert identity is not None
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="no one else can write to"):
        write_identity(shared / "x.pid", identity)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    write_identity(private / "x.pid", identity)
    (private / "x.pid").chmod(0o666)  # writable by anyone: no longer evidence of anything
    assert read_identity(private / "x.pid") is None
    (private / "y.pid").symlink_to(private / "x.pid")
    assert read_identity(private / "y.pid") is None
