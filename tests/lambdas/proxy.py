"""A TCP relay that breaks connections on demand, to reproduce what networks and poolers do to clients.

* :meth:`FaultyProxy.cut_next_send`: the next bytes a client sends are not delivered and both
  sides get a reset, like an NLB that silently forgot an idle flow and answers the next packet with
  RST. Works on TLS too (the bytes are never looked at).
* :meth:`FaultyProxy.lose_commit`: on a plaintext connection, the next ``COMMIT`` is either never
  delivered (``"request"``) or delivered and its answer lost (``"reply"``), so the client cannot
  know whether it committed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a middlebox that dropped the flow does.

    ``SHUT_RD`` wakes a relay thread blocked in ``recv`` on this socket without telling the peer
    anything; the close with a zero linger then sends the RST.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    drop_replies: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cut(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                _reset(self.client)
                _reset(self.upstream)


class FaultyProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # close() does not wake a blocked accept() on Linux
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cut_sends = 0
        self._commit_mode: Literal["request", "reply"] | None = None
        self._stopped = False
        self._start(self._accept_loop)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- faults ------------------------------------------------------------------------------

    def cut_next_send(self, times: int = 1) -> None:
        """Reset the connection carrying each of the next ``times`` client sends (any connection)."""
        with self._lock:
            self._cut_sends = times

    def lose_commit(self, mode: Literal["request", "reply"]) -> None:
        with self._lock:
            self._commit_mode = mode

    def _take_cut(self) -> bool:
        with self._lock:
            if self._cut_sends:
                self._cut_sends -= 1
                return True
            return False

    def _take_commit_fault(self) -> Literal["request", "reply"] | None:
        with self._lock:
            mode, self._commit_mode = self._commit_mode, None
            return mode

    # -- relaying ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self.accepted += 1
                self._links.append(link)
            self._start(self._client_to_server, link)
            self._start(self._server_to_client, link)

    def _client_to_server(self, link: _Link) -> None:
        buffer = b""
        phase: Literal["startup", "messages", "opaque"] = "startup"
        while True:
            try:
                data = link.client.recv(65536)
            except OSError:
                data = b""
            if not data or self._take_cut():
                link.cut()
                return
            if phase == "opaque":
                self._send_all(link, data, len(data))
                continue
            buffer += data
            # Forward whole protocol messages, so that a COMMIT can be held back or followed.
            while not link.closed:
                if phase == "opaque":
                    buffer = self._send_all(link, buffer, len(buffer))
                    break
                if phase == "startup":
                    # Untyped: int32 length, int32 code (SSLRequest, GSSENCRequest or the protocol version).
                    if len(buffer) < 8 or len(buffer) < int.from_bytes(buffer[:4], "big"):
                        break
                    size = int.from_bytes(buffer[:4], "big")
                    code = int.from_bytes(buffer[4:8], "big")
                    if code == _SSL_REQUEST:
                        phase = "opaque"  # TLS follows; never looked into
                    elif code != _GSSENC_REQUEST:
                        phase = "messages"
                    buffer = self._send_all(link, buffer, size)
                    continue
                if len(buffer) < 5:
                    break
                size = 1 + int.from_bytes(buffer[1:5], "big")
                if len(buffer) < size:
                    break
                if buffer[:1] == b"Q" and buffer[5:size].lstrip().upper().startswith(b"COMMIT"):
                    mode = self._take_commit_fault()
                    if mode == "request":
                        link.cut()
                        return
                    if mode == "reply":
                        link.drop_replies = True
                buffer = self._send_all(link, buffer, size)
            if link.closed:
                return

    def _send_all(self, link: _Link, buffer: bytes, size: int) -> bytes:
        try:
            link.upstream.sendall(buffer[:size])
        except OSError:
            link.cut()
        return buffer[size:]

    def _server_to_client(self, link: _Link) -> None:
        while True:
            try:
                data = link.upstream.recv(65536)
            except OSError:
                data = b""
            if not data or link.drop_replies:
                link.cut()
                return
            try:
                link.client.sendall(data)
            except OSError:
                link.cut()
                return

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        for thread in self._threads:
            thread.join(timeout=5)
