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
from pathlib import Path
from typing import Any

from lifeguard.bench.cpu import process_cpu_ns
from lifeguard.stack.pooler import wait_for_port
from lifeguard.stack.system import free_port

_CONNECTIONS = re.compile(r"^(\d+) connections in", re.MULTILINE)


class TlsFloorError(RuntimeError):
    pass


def handshake_cpu_ms(cert: Path, key: Path, seconds: int, tickets: int) -> dict[str, Any]:
    """Server CPU per full TLS 1.3 handshake (ms) over ``seconds`` of back-to-back handshakes."""
    port = free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-accept", str(port), "-cert", str(cert), "-key", str(key), "-tls1_3",
         "-num_tickets", str(tickets)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port("127.0.0.1", port, 10, alive=server):
            raise TlsFloorError("openssl s_server did not start")
        before = process_cpu_ns(server.pid)
        client = subprocess.run(
            ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )
        spent = process_cpu_ns(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    match = _CONNECTIONS.search(client.stdout)
    if not match or int(match.group(1)) == 0:
        raise TlsFloorError(f"openssl s_time made no handshakes: {(client.stdout + client.stderr).strip()[-300:]}")
    handshakes = int(match.group(1))
    return {"handshakes": handshakes, "ms_per_handshake": round(spent / 1e6 / handshakes, 4)}


def measure(cert: Path, key: Path, rounds: int, seconds: int = 2) -> dict[str, Any]:
    """Both ticket settings, alternating, ``rounds`` times each."""
    runs: dict[str, list[float]] = {"tickets_2": [], "tickets_0": []}
    for _ in range(rounds):
        for name, tickets in (("tickets_2", 2), ("tickets_0", 0)):
            runs[name].append(handshake_cpu_ms(cert, key, seconds, tickets)["ms_per_handshake"])
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"openssl": version, "seconds": seconds, "ms_per_handshake": runs}
