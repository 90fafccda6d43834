"""Where root may read and write without acting on what another user controls.

The CLI often runs as root while Postgres and PgBouncer run as the ``postgres`` user. Root must
never follow a path another user could have planted or swapped: a state directory someone else
made, a ``stack.json`` naming their binary, a symlink left where root writes a file or reads a log.
Every check here looks at the entry itself (``lstat``, ``O_NOFOLLOW``), never at what it points to.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class UnsafePathError(RuntimeError):
    """A path another user could control; the message says what to change."""


_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def owned_dir(path: Path, mode: int, *, owner: int | None = None, parents: bool = True) -> None:
    """Make ``path`` (mode ``mode``), or accept it only as a real folder of ``owner`` that no one else can write.

    ``owner`` defaults to the effective user. A folder planted by someone else, a symlink, or one
    group or others may write to is refused before anything in it is read: its contents are theirs.
    """
    uid = os.geteuid() if owner is None else owner
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        check_owned_dir(path, owner=uid)
    else:
        if os.geteuid() != uid:
            os.chown(path, uid, -1, follow_symlinks=False)
        os.chmod(path, mode, follow_symlinks=False)  # mkdir's mode passes through the umask


def check_owned_dir(path: Path, *, owner: int | None = None) -> None:
    """Refuse ``path`` unless it is a real folder of ``owner`` (default: us) that no one else can write."""
    uid = os.geteuid() if owner is None else owner
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{path} is not a folder (a symlink or a file is there); remove it or choose another")
    if info.st_uid != uid or info.st_mode & _WRITABLE_BY_OTHERS:
        fix = (f"Run `chmod go-w {path}`" if info.st_uid == uid
               else "Remove it (after checking what is in it), or choose a folder of your own")
        raise UnsafePathError(
            f"{path} belongs to uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):04o}; it must belong to "
            f"uid {uid} and be writable by no one else, since what is in it is trusted. {fix}"
        )


def _open_no_link(path: Path) -> int:
    """``path`` opened for reading, refusing a symlink (``O_NOFOLLOW``) and never blocking on a FIFO."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symlink; not following it. Remove it") from None
        raise


def read_owned(path: Path, *, owner: int | None = None) -> str:
    """The text of ``path``: a regular file (not a link) of ``owner`` (default: us) that no one else can write."""
    uid = os.geteuid() if owner is None else owner
    fd = _open_no_link(path)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_mode & _WRITABLE_BY_OTHERS:
            raise UnsafePathError(
                f"{path} must be a regular file of uid {uid} that no one else can write (found uid {info.st_uid}, "
                f"mode {info.st_mode:o}); remove it"
            )
        return handle.read().decode(errors="replace")


def read_service_file(path: Path, service_uid: int, *, limit: int | None = None) -> str:
    """Text root reads in a folder the service user owns (a log, a pid file, a password it was handed).

    Only a regular file of the service user with one link is read: a symlink or hard link the service
    user planted could otherwise make root read (and show, in an error message) a file it may not read.
    Opened non-blocking, so a planted FIFO cannot hang us. ``limit``: only the last ``limit`` bytes.
    """
    return read_service_bytes(path, service_uid, limit=limit).decode(errors="replace")


def read_service_bytes(path: Path, service_uid: int, *, limit: int | None = None) -> bytes:
    """:func:`read_service_file`'s bytes, undecoded (a file served as it is, e.g. a package)."""
    fd = _open_no_link(path)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid not in (service_uid, os.geteuid()):
            raise UnsafePathError(f"{path} is not a regular file of the service user; not reading it")
        if limit is not None and info.st_size > limit:
            handle.seek(info.st_size - limit)
        return handle.read()


def check_trusted_executable(path: Path) -> None:
    """Refuse, as root, to run a program that a user other than root could have written or swapped.

    The file and every folder above it must belong to root and be writable by no one else (as
    ``sudo`` asks of its ``secure_path``); a user's build under their home is not run as root.
    """
    if os.geteuid() != 0:
        return
    real = Path(os.path.realpath(path))
    for entry in [real, *real.parents]:
        info = entry.lstat()
        if info.st_uid != 0 or info.st_mode & _WRITABLE_BY_OTHERS:
            raise UnsafePathError(
                f"{path} is not run as root: {entry} belongs to uid {info.st_uid} with mode "
                f"{stat.S_IMODE(info.st_mode):04o}, so another user could replace it. Use a pgbouncer binary "
                "owned by root in a root-owned folder (e.g. /usr/sbin/pgbouncer)"
            )


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """``chown -R`` that never follows a link: a folder swapped for a symlink mid-walk is not entered."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{path} is a symlink; not changing its owner")
    if not stat.S_ISDIR(info.st_mode):
        os.chown(path, uid, gid, follow_symlinks=False)
        return
    # Each entry is changed relative to its folder's descriptor, the link itself and not its target.
    for _root, dirs, files, root_fd in os.fwalk(path, follow_symlinks=False):
        os.fchown(root_fd, uid, gid)
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
