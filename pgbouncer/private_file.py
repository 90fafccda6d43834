"""Writing a file only its owner may read: the pooler's auth_file and ini, TLS keys, the local stack's secrets.

Stdlib only: the pooler image ships this package alone, and lifeguard imports it from here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, data: str | bytes, *, atomic: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, also when ``path`` already exists with a wider mode."""
    write_file(path, data, PRIVATE_MODE, atomic=atomic)


def write_file(path: Path, data: str | bytes, mode: int, *, atomic: bool = False) -> None:
    """Write ``data`` to ``path`` with ``mode``, never through a link another user planted there.

    ``os.open``'s mode applies only when it creates the file, so an existing file is narrowed with
    ``fchmod`` before its old content is truncated away and the new content written. A symlink at
    ``path`` is refused (``O_NOFOLLOW``), and so is anything but a regular file with one link: root
    writes into folders the ``postgres`` user owns, who could otherwise point the write at any file.
    ``atomic`` writes a fresh sibling ``.<name>.partial`` (never following a link) and renames it over
    ``path``, so readers see the old content or the new, never part of it; ``path``'s folder must then
    be ours alone.
    """
    payload = data.encode() if isinstance(data, str) else data
    if atomic:
        target = path.with_name(f".{path.name}.partial")
        target.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    else:
        target = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(target, flags | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise PermissionError(f"{target} is not a regular file with one link; not writing to it")
        os.fchmod(fd, mode)
        handle.truncate()
        handle.write(payload)
    if atomic:
        os.replace(target, path)
