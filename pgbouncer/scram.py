"""SCRAM-SHA-256 verifiers: the one place lifeguard computes and reads them.

PgBouncer holds the application role's verifier in its ``auth_file`` (not the password): it then
checks each client's proof without running PBKDF2 per login, and logs in to Postgres by SCRAM
pass-through, which works only when its verifier is byte-identical to the one in ``pg_authid``.
So the stack computes the verifier itself, with a salt that stays the same while the password
does, and gives the very same string to PgBouncer and to the migration job (``ALTER ROLE ...
PASSWORD '<verifier>'``, which Postgres stores as given).

Hand-written on the standard library (``hashlib.pbkdf2_hmac``, ``hmac``): it is the RFC 5802 /
RFC 7677 recipe in a few lines, exactly as Postgres' ``scram_build_secret`` does it, and the
Pulumi program, the pooler image and the local stack can all import it without a dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "SCRAM-SHA-256$"
ITERATIONS = 4096
"""Postgres' default (``scram_iterations``); what libpq and ``password_encryption`` produce."""
SALT_BYTES = 16
"""Postgres' ``SCRAM_DEFAULT_SALT_LEN``."""
KEY_BYTES = 32
"""SHA-256 output: the length of StoredKey and ServerKey."""
MAX_ITERATIONS = 2**31 - 1
APP_ITERATIONS = 16
"""The application role's count, for its machine-generated password only (never one a person typed).

The count slows an attacker who holds a stored verifier and guesses the password: 4,096 adds 12
bits of work to each guess. The application role's password is generated (over 190 bits), and the
functions hold the password itself in ``DATABASE_URL``, so those 12 bits protect nothing; what they
cost is the client's PBKDF2 at every cold start, a third of a 128 MB function's connect
(``lifeguard bench --only cold-start``; docs/roles.md). A password a user chose needs Postgres'
default or more: never lower the count for one."""
MIN_APP_ITERATIONS = 16
"""The floor: the lowest count every driver in tests/compat logs in with (tests/compat/test_scram_floor.py).
Below it nothing measurable is left to save (16 HMACs), and drivers' edge cases begin (RFC 7677
asks servers for at least 4,096, and a client may enforce that: keep 4,096 for such a client)."""
_SHAPE = re.compile(r"^SCRAM-SHA-256\$(?P<iterations>[0-9]+):(?P<salt>[^$:]+)\$(?P<stored>[^$:]+):(?P<server>[^$:]+)$")


class VerifierError(ValueError):
    """Not a SCRAM-SHA-256 verifier PgBouncer and Postgres can use; the message says why (never the text)."""


@dataclass(frozen=True)
class ScramVerifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __str__(self) -> str:
        return (f"{PREFIX}{self.iterations}:{_b64(self.salt)}"
                f"${_b64(self.stored_key)}:{_b64(self.server_key)}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_app_iterations(iterations: int, where: str) -> int:
    """``iterations`` if the application role may use it; otherwise a :class:`VerifierError` naming ``where``."""
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise VerifierError(f"{where} must be a whole number, got {type(iterations).__name__}")
    if not MIN_APP_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise VerifierError(
            f"{where} must be from {MIN_APP_ITERATIONS} (the lowest count every tested driver logs in with) to "
            f"{MAX_ITERATIONS}, got {iterations}; {APP_ITERATIONS} is the default for the generated password, "
            f"{ITERATIONS} Postgres' own"
        )
    return iterations


def scram_verifier(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """The verifier Postgres would store for ``password`` with this salt and iteration count.

    Postgres runs SASLprep on the password first, which leaves pure ASCII unchanged; other text
    could be normalised, so only ASCII is accepted (generated passwords are letters and digits).
    """
    if not password:
        raise VerifierError("the password is empty")
    if not password.isascii():
        raise VerifierError("the password must be ASCII (Postgres would SASLprep-normalise other text, "
                            "and the verifier would no longer match)")
    if not salt:
        raise VerifierError("the salt is empty")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise VerifierError(f"iterations must be between 1 and {MAX_ITERATIONS}, got {iterations}")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return str(ScramVerifier(iterations, salt, hashlib.sha256(client_key).digest(), server_key))


def parse_verifier(text: str) -> ScramVerifier:
    """Read ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` as Postgres and PgBouncer do.

    Anything else Postgres would take for a *plain password* and hash again (with a salt of its
    own, so PgBouncer's copy would no longer match), and PgBouncer would not use for pass-through.
    """
    match = _SHAPE.match(text)
    if match is None:
        raise VerifierError("not of the form SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
    iterations = int(match["iterations"])
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise VerifierError(f"the iteration count must be between 1 and {MAX_ITERATIONS}")
    parts: dict[str, bytes] = {}
    for name in ("salt", "stored", "server"):
        try:
            parts[name] = base64.b64decode(match[name], validate=True)
        except binascii.Error:
            raise VerifierError(f"the {name} part is not valid base64") from None
    if not parts["salt"]:
        raise VerifierError("the salt is empty")
    for name in ("stored", "server"):
        if len(parts[name]) != KEY_BYTES:
            raise VerifierError(f"the {name} key must be {KEY_BYTES} bytes, not {len(parts[name])}")
    verifier = ScramVerifier(iterations, parts["salt"], parts["stored"], parts["server"])
    if str(verifier) != text:
        # Non-canonical base64 (e.g. stray padding bits) would not be byte-identical to pg_authid's.
        raise VerifierError("the base64 parts are not in canonical form")
    return verifier


def is_verifier(text: str) -> bool:
    try:
        parse_verifier(text)
    except VerifierError:
        return False
    return True


def verifies(verifier: str, password: str) -> bool:
    """Whether ``password`` logs in against ``verifier`` (the same salt and iterations give the same string)."""
    parsed = parse_verifier(verifier)
    try:
        expected = scram_verifier(password, parsed.salt, parsed.iterations)
    except VerifierError:
        return False
    return hmac.compare_digest(expected, verifier)
