"""The local stack's two database roles, as on AWS.

* The owner (``lifeguard_owner``): stands in for the RDS master user. Not a superuser, but
  ``CREATEROLE``; owns the database, runs the migrations, ``DATABASE_URL_UNPOOLED`` logs in as it.
* The application role (``lifeguard_app``): DML only, created and granted by the migration job
  (``migrator/roles.py``); ``DATABASE_URL`` logs in as it through PgBouncer, whose auth_file holds
  its SCRAM verifier. The verifier comes from the stored password and a salt stored next to it
  (``app.scram-salt``), computed by the same :func:`pgbouncer.scram.scram_verifier` the Pulumi
  program uses, so PgBouncer's copy and ``pg_authid``'s are byte-identical.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from migrator.contract import APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV
from pgbouncer.private_file import write_private
from pgbouncer.scram import SALT_BYTES, scram_verifier

OWNER_USER = "lifeguard_owner"
SALT_FILE = "app.scram-salt"


def ensure_secret(path: Path) -> None:
    """A generated password in ``path`` (0600), unless one is there already."""
    if not path.exists():
        # URL-safe: it travels percent-encoded in URLs; ASCII, as the SCRAM verifier needs.
        write_private(path, secrets.token_urlsafe(24) + "\n")


def app_verifier(password: str, state_dir: Path, iterations: int) -> str:
    """The application role's SCRAM verifier; the salt is made once and kept with the stack.

    ``iterations``: the stack's count, chosen for this generated password only (``pgbouncer.scram.APP_ITERATIONS``).
    """
    salt_file = state_dir / SALT_FILE
    if not salt_file.exists():
        write_private(salt_file, secrets.token_hex(SALT_BYTES) + "\n")
    return scram_verifier(password, bytes.fromhex(salt_file.read_text().strip()), iterations)


def provisioning_env(role: str, verifier: str) -> dict[str, str]:
    """What the migration job reads to provision the application role."""
    return {APP_ROLE_ENV: role, APP_ROLE_VERIFIER_ENV: verifier}
