"""The local stack's two database roles, as on AWS.

* The owner (``lifeguard_owner``): stands in for the RDS master user. Not a superuser, but
  ``CREATEROLE``; owns the database, runs the migrations, ``DATABASE_URL_UNPOOLED`` logs in as it.
* The application role (``lifeguard_app``): DML only, created and granted by the migration job
  (``migrator/roles.py``); ``DATABASE_URL`` logs in as it through PgBouncer, whose auth_file holds
  its SCRAM verifier. The verifier comes from the stored password and a salt stored next to it
  (``app.scram-salt``), computed by the same :func:`pgbouncer.scram.scram_verifier` the Pulumi
  program uses, so PgBouncer's copy and ``pg_authid``'s are byte-identical.
* The second login role (``lifeguard_app_b``, :func:`migrator.contract.alternate_role`), with its own
  password and salt (``app_b.password``, ``app_b.scram-salt``): a password rotation
  (:mod:`lifeguard.stack.rotation`) changes whichever of the two ``DATABASE_URL`` does not log in as.
  Both are members of the ``NOLOGIN`` role that holds the DML grants (:func:`migrator.contract.group_role`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from lifeguard.rotation import RotationState
from migrator.contract import APP_ROLE_B_VERIFIER_ENV, APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, alternate_role
from pgbouncer.private_file import write_file, write_private
from pgbouncer.scram import SALT_BYTES, scram_verifier

OWNER_USER = "lifeguard_owner"
FIRST_SALT_FILE = "app.scram-salt"
FIRST_LOGIN_FILE = "app.password"
SECOND_SALT_FILE = "app_b.scram-salt"
SECOND_LOGIN_FILE = "app_b.password"


@dataclass(frozen=True)
class LoginRole:
    """One of the two login roles ``DATABASE_URL`` alternates between, and where its secrets live."""

    name: str
    password_file: Path
    salt_file: Path

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def salt(self) -> bytes:
        """Its verifier's salt: made once and kept with the stack, so an unchanged password keeps its verifier."""
        if not self.salt_file.exists():
            write_private(self.salt_file, secrets.token_hex(SALT_BYTES) + "\n")
        return bytes.fromhex(self.salt_file.read_text().strip())

    def verifier(self, iterations: int) -> str:
        """Its SCRAM verifier. ``iterations``: the stack's count, chosen for this generated password only
        (``pgbouncer.scram.APP_ITERATIONS``)."""
        return scram_verifier(self.password(), self.salt(), iterations)


def login_roles(state_dir: Path, app_user: str) -> tuple[LoginRole, LoginRole]:
    """The application role (today's name, what a stack made before rotation logs in as) and its alternate."""
    return (LoginRole(app_user, state_dir / FIRST_LOGIN_FILE, state_dir / FIRST_SALT_FILE),
            LoginRole(alternate_role(app_user), state_dir / SECOND_LOGIN_FILE, state_dir / SECOND_SALT_FILE))


def new_password() -> str:
    # URL-safe: it travels percent-encoded in URLs; ASCII, as the SCRAM verifier needs.
    return secrets.token_urlsafe(24)


def ensure_secret(path: Path) -> None:
    """A generated password in ``path`` (0600), unless one is there already."""
    if not path.exists():
        write_private(path, new_password() + "\n")


def provisioning_env(role: str, verifier: str, alternate_verifier: str | None = None) -> dict[str, str]:
    """What the migration job reads to provision the application role (and its alternate, for rotation)."""
    env = {APP_ROLE_ENV: role, APP_ROLE_VERIFIER_ENV: verifier}
    if alternate_verifier is not None:
        env[APP_ROLE_B_VERIFIER_ENV] = alternate_verifier
    return env


ROTATION_FILE = "rotation.json"


class RotationStateError(ValueError):
    """``rotation.json`` is not what lifeguard wrote; the message says what to do."""


def load_rotation(path: Path) -> RotationState:
    """The stack's rotation state (``rotation.json``); rotation 0, switched 0 for a stack without the file
    (made before rotation existed: it logs in as the application role)."""
    if not path.exists():
        return RotationState()
    try:
        raw = json.loads(path.read_text())
        state = RotationState(int(raw["rotation"]), int(raw["switched"]))
    except (ValueError, KeyError, TypeError):
        state = RotationState(-1, -1)
    if not 0 <= state.switched <= state.rotation <= state.switched + 1:
        raise RotationStateError(
            f"{path} is not a rotation state lifeguard wrote; restore it, or run `lifeguard local down --purge`")
    return state


def save_rotation(path: Path, state: RotationState) -> None:
    write_file(path, json.dumps({"rotation": state.rotation, "switched": state.switched}) + "\n", 0o644, atomic=True)
