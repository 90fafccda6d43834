"""The floor under PgBouncer's client TLS: what this machine's OpenSSL spends on one TLS 1.3 handshake.

``openssl s_server`` (single-threaded, like PgBouncer, and linked to the same libssl) accepts
``openssl s_time -new`` full handshakes for a few seconds; its CPU from ``/proc`` divided by the
handshakes is the server side of one handshake with nothing else around it. Run with the
certificate PgBouncer used, once with OpenSSL's default two TLS 1.3 session tickets per
connection (what PgBouncer sends: it has no setting for them) and once with none, which is the
only part of a full handshake that a new function instance, which can never resume, does not need.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from lifeguard.bench.cpu import process_cpu_ns
from lifeguard.stack.pooler import wait_for_port
from lifeguard.stack.system import free_port

_CONNECTIONS = re.compile(r"^(\d+) connections in", re.MULTILINE)


class TlsFloorError(RuntimeError):
    pass


def s_server_args(port: int, cert: str, key: str, tickets: int) -> list[str]:
    return ["s_server", "-quiet", "-accept", str(port), "-cert", cert, "-key", key, "-tls1_3",
            "-num_tickets", str(tickets)]


# Starts an ``openssl s_server`` on the port with that many tickets; yields the server's pid.
ServerRunner = Callable[[int, int], AbstractContextManager[int]]


def local_server(cert: Path, key: Path) -> ServerRunner:
    """This machine's ``openssl s_server``."""
    @contextmanager
    def run(port: int, tickets: int) -> Iterator[int]:
        server = subprocess.Popen(
            ["openssl", *s_server_args(port, str(cert), str(key), tickets)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_for_port("127.0.0.1", port, 10, alive=server):
                raise TlsFloorError("openssl s_server did not start")
            yield server.pid
        finally:
            server.terminate()
            server.wait(timeout=10)
    return run


def handshake_cpu_ms(cert: Path, key: Path, seconds: int, tickets: int,
                     server: ServerRunner | None = None) -> dict[str, Any]:
    """Server CPU per full TLS 1.3 handshake (ms) over ``seconds`` of back-to-back handshakes."""
    port = free_port()
    with (server or local_server(cert, key))(port, tickets) as pid:
        before = process_cpu_ns(pid)
        client = subprocess.run(
            ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )
        spent = process_cpu_ns(pid) - before
    match = _CONNECTIONS.search(client.stdout)
    if not match or int(match.group(1)) == 0:
        raise TlsFloorError(f"openssl s_time made no handshakes: {(client.stdout + client.stderr).strip()[-300:]}")
    handshakes = int(match.group(1))
    return {"handshakes": handshakes, "ms_per_handshake": round(spent / 1e6 / handshakes, 4)}


def measure(cert: Path, key: Path, rounds: int, seconds: int = 2, server: ServerRunner | None = None,
            version: str | None = None) -> dict[str, Any]:
    """Both ticket settings, alternating, ``rounds`` times each.

    ``server``/``version``: another ``openssl s_server`` (the pooler image's) and its ``openssl version``.
    """
    runs: dict[str, list[float]] = {"tickets_2": [], "tickets_0": []}
    for _ in range(rounds):
        for name, tickets in (("tickets_2", 2), ("tickets_0", 0)):
            runs[name].append(handshake_cpu_ms(cert, key, seconds, tickets, server)["ms_per_handshake"])
    if version is None:
        version = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"openssl": version, "seconds": seconds, "ms_per_handshake": runs}
