"""The application role's credentials: a generated password and the SCRAM verifier made from it.

The functions log in as this DML-only role through PgBouncer (``DATABASE_URL`` carries the
password); PgBouncer holds only the verifier, and the migration job sets the same verifier in
Postgres (``migrator/roles.py``). Both copies must be byte-identical for SCRAM pass-through, so the
verifier is computed here, once (``pgbouncer.scram``), with a salt kept in the stack's state and the
stack's iteration count (:func:`lifeguard.aws.deployed.app_scram_iterations`): an unchanged password and
count give an unchanged verifier, hence no secret update and no redeploy.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

from lifeguard.aws.secrets import generated_password, mark_secret
from pgbouncer.scram import SALT_BYTES, scram_verifier


@dataclass(frozen=True)
class AppRoleCredentialsArgs:
    username: str
    scram_iterations: int
    """The verifier's count, for this generated password only (``pgbouncer.scram.APP_ITERATIONS``; never
    lower it for a password a person chose): :func:`lifeguard.aws.deployed.app_scram_iterations`."""


class AppRoleCredentials(pulumi.ComponentResource):
    username: str
    password: pulumi.Output[str]
    """The plain password: only in ``DATABASE_URL``, which the functions need to log in."""
    verifier: pulumi.Output[str]
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``: the pooler's secret holds it."""

    def __init__(self, name: str, args: AppRoleCredentialsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:database:AppRoleCredentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = generated_password(f"{name}-password", child)
        # The salt is no secret (it is part of the verifier); it only has to stay put. Replacing the
        # password (`pulumi up --replace`) keeps it, and the verifier changes with the password.
        salt = random.RandomId(f"{name}-scram-salt", byte_length=SALT_BYTES, opts=child)
        verifier: pulumi.Output[str] = pulumi.Output.all(password.result, salt.hex).apply(
            lambda values: scram_verifier(str(values[0]), bytes.fromhex(str(values[1])), args.scram_iterations)
        )
        self.username = args.username
        self.password = mark_secret(password.result)
        self.verifier = mark_secret(verifier)
        self.register_outputs({"username": self.username})
