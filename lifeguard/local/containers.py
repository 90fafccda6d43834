"""The two images that ship, built from their Dockerfiles on a private engine.

Used by the image tests and by ``lifeguard local up --images``. Both Dockerfiles fetch the RDS CA
bundle at build time from ``RDS_CA_BUNDLE_URL``; off AWS the bundle is a local PEM (the local
Postgres' CA), served to the build on loopback for the duration of the build only.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeguard.local.docker_engine import DockerEngine, Progress, no_progress

POOLER_IMAGE = "lifeguard-pgbouncer:local"
MIGRATOR_IMAGE = "lifeguard-migrator:local"
CA_BUNDLE_ARG = "RDS_CA_BUNDLE_URL"


@dataclass(frozen=True)
class BuiltImages:
    pooler: str
    migrator: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_on_loopback(path: Path, port_file: Path) -> Iterator[str]:
    """Serve ``path`` at ``http://127.0.0.1:PORT/NAME`` while the block runs (the builds fetch it).

    The port is kept in ``port_file`` and reused: the URL is a build argument, and a new value would
    rebuild the layers after it every time.
    """
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        port = 0
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:  # taken since: a new port, once
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(str(server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, name="ca-bundle-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_images(engine: DockerEngine, repo_root: Path, ca_bundle: Path | None = None,
                 progress: Progress = no_progress) -> BuiltImages:
    """Build the pooler and migrator images (cached layers reused; only what changed is rebuilt).

    ``ca_bundle``: a PEM to build in instead of AWS's RDS bundle (the Dockerfiles' default URL).
    """
    engine.ensure_base_image(progress=progress)
    contexts = {POOLER_IMAGE: repo_root / "pgbouncer", MIGRATOR_IMAGE: repo_root / "migrator"}
    if ca_bundle is None:
        for tag, context in contexts.items():
            engine.build(context, tag, progress=progress)
    else:
        with serve_on_loopback(ca_bundle, engine.root / "ca-bundle.port") as url:
            for tag, context in contexts.items():
                engine.build(context, tag, {CA_BUNDLE_ARG: url}, progress=progress)
    return BuiltImages(pooler=POOLER_IMAGE, migrator=MIGRATOR_IMAGE)
