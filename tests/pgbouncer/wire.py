"""A raw PostgreSQL wire-protocol client for the attack tests: packets no driver would send.

Hand-written on the standard library (socket, ssl, hashlib): psycopg/libpq cannot send a second
StartupMessage mid-authentication, nor stop after one, which is what these attacks are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
from dataclasses import dataclass

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12


class WireError(RuntimeError):
    pass


def startup_packet(params: dict[str, str]) -> bytes:
    body = struct.pack("!I", PROTOCOL_3)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def tls_connect(port: int, timeout: float = 5) -> ssl.SSLSocket:
    """A TLS connection to PgBouncer on 127.0.0.1, as ``sslmode=require`` makes it (not verified)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.sendall(struct.pack("!II", 8, SSL_REQUEST))
    if raw.recv(1) != b"S":
        raw.close()
        raise WireError("the pooler refused TLS")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(raw)


@dataclass(frozen=True)
class Message:
    kind: bytes
    payload: bytes

    @property
    def auth_code(self) -> int | None:
        return struct.unpack("!I", self.payload[:4])[0] if self.kind == b"R" else None

    def error_text(self) -> str:
        """The fields of an ErrorResponse, e.g. ``SFATAL C08P01 Minvalid ...``."""
        return " ".join(f.decode(errors="replace") for f in self.payload.split(b"\0") if f)


def read_message(sock: socket.socket) -> Message:
    header = _read_exact(sock, 5)
    kind, length = header[:1], struct.unpack("!I", header[1:])[0]
    return Message(kind, _read_exact(sock, length - 4))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise WireError("the pooler closed the connection")
        data += chunk
    return data


@dataclass
class ScramClient:
    """The client side of SCRAM-SHA-256 (RFC 5802/7677) without channel binding."""

    password: str
    nonce: str = ""

    def first(self) -> bytes:
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self._first_bare = f"n=,r={self.nonce}"
        body = f"n,,{self._first_bare}".encode()
        return message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(body)) + body)

    def final(self, server_first: str) -> bytes:
        fields = dict(part.split("=", 1) for part in server_first.split(","))
        if not fields["r"].startswith(self.nonce):
            raise WireError("server nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return message(b"p", f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
