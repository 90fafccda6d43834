"""Writing a file only its owner may read: the pooler's auth_file and ini, TLS keys, the local stack's secrets.

Stdlib only: the pooler image ships this package alone, and lifeguard imports it from here.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, data: str | bytes, *, atomic: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, also when ``path`` already exists with a wider mode.

    ``os.open``'s mode applies only when it creates the file, so an existing file is narrowed with
    ``fchmod`` before its old content is truncated away and the new content written. ``atomic`` writes a
    fresh sibling ``.<name>.partial`` (never following a link) and renames it over ``path``, so readers see
    the old content or the new, never part of it; ``path``'s folder must then be ours alone.
    """
    payload = data.encode() if isinstance(data, str) else data
    if atomic:
        target = path.with_name(f".{path.name}.partial")
        target.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    else:
        target = path
        flags = os.O_WRONLY | os.O_CREAT
    fd = os.open(target, flags, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, PRIVATE_MODE)
        handle.truncate()
        handle.write(payload)
    if atomic:
        os.replace(target, path)
