"""Which process a pid names, from ``/proc``: never trust a bare pid before signalling it.

A pid file only says which pid a process had. After a crash the pid may belong to another
process, and a pid file that someone else can write may name any process at all; as root, a
signal sent to it would hit that process. So the local stack records the identity of what it
started (pid, start time, executable, command line) in a file only we can write, and a pid
counts as ours only while ``/proc`` still shows that same identity. A zombie (killed, not yet
reaped by its parent) is not running.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from pgbouncer.private_file import write_private


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: int
    """Clock ticks after boot at which the process started (``/proc/PID/stat`` field 22): a reused pid differs."""
    exe: str
    """What ``/proc/PID/exe`` points at."""
    argv: tuple[str, ...]


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``Z`` for a zombie...), or None if there is none."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process ``pid``; None if there is none, it is a zombie, or it cannot be read."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return ProcessIdentity(
        pid=pid,
        start_time=int(fields[19]),
        exe=exe,
        argv=tuple(os.fsdecode(a) for a in argv[:-1] if argv),
    )


def is_running(identity: ProcessIdentity) -> bool:
    """True while ``identity.pid`` is still that very process (same start time, executable and command line)."""
    return identify(identity.pid) == identity


def write_identity(path: Path, identity: ProcessIdentity) -> None:
    """Record ``identity`` in ``path`` (0600, replaced atomically; ``path``'s folder must be ours alone)."""
    check_private_dir(path.parent)
    write_private(path, json.dumps({**asdict(identity), "argv": list(identity.argv)}), atomic=True)


def read_identity(path: Path) -> ProcessIdentity | None:
    """The identity recorded in ``path``; None when there is none or the file is not ours alone to write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        try:
            raw = json.load(handle)
            return ProcessIdentity(
                pid=int(raw["pid"]), start_time=int(raw["start_time"]), exe=str(raw["exe"]),
                argv=tuple(str(a) for a in raw["argv"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def check_private_dir(directory: Path) -> None:
    """Refuse a folder others could write into: they could replace the records kept there."""
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"{directory} must be a folder owned by uid {os.geteuid()} that no one else can write to, "
            "since it holds the pid records of the processes lifeguard signals"
        )


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (the state) on; the command name before it may hold spaces."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rindex(")") + 2:].split()
