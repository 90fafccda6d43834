"""The application's login roles' credentials: generated passwords and the SCRAM verifiers made from them.

The functions log in as one of two DML-only login roles through PgBouncer (``DATABASE_URL`` carries
the password): the application role and its alternate (``<name>_b``), which a password rotation
alternates between (:mod:`lifeguard.aws.rotation`, docs/roles.md). PgBouncer holds only verifiers, and
the migration job sets the same verifiers in Postgres (``migrator/roles.py``). Both copies must be
byte-identical for SCRAM pass-through, so each verifier is computed here, once (``pgbouncer.scram``),
with a salt kept in the stack's state and the stack's iteration count
(:func:`lifeguard.aws.deployed.app_scram_iterations`): an unchanged password and count give an
unchanged verifier, hence no secret update and no redeploy.

Each password's ``keepers`` hold the rotation that last gave that role its password, so rotation ``N``
replaces exactly role ``N % 2``'s, never the one ``DATABASE_URL`` uses. The application role's
password has no keeper until its first rotation (rotation 2): a stack deployed before rotation keeps
its password.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_random as random

from lifeguard.aws.secrets import generated_password, mark_secret
from lifeguard.rotation import RotationState
from migrator.contract import alternate_role
from pgbouncer.scram import SALT_BYTES, scram_verifier


@dataclass(frozen=True)
class AppRoleCredentialsArgs:
    username: str
    scram_iterations: int
    """The verifier's count, for these generated passwords only (``pgbouncer.scram.APP_ITERATIONS``; never
    lower it for a password a person chose): :func:`lifeguard.aws.deployed.app_scram_iterations`."""
    rotation: RotationState = field(default_factory=RotationState)
    """Where the password rotation stands (:func:`lifeguard.aws.rotation.plan` checked it)."""


class AppRoleCredentials(pulumi.ComponentResource):
    username: str
    """The application role (``dbAppUsername``): ``LIFEGUARD_APP_ROLE``."""
    password: pulumi.Output[str]
    """Its plain password."""
    verifier: pulumi.Output[str]
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``: the pooler's secret holds it."""
    alternate_username: str
    """The second login role (``<name>_b``)."""
    alternate_verifier: pulumi.Output[str]
    active_username: str
    """The login role ``DATABASE_URL`` uses (``appPasswordSwitched``)."""
    active_password: pulumi.Output[str]
    """Its plain password: only in ``DATABASE_URL``, which the functions need to log in."""

    def __init__(self, name: str, args: AppRoleCredentialsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:database:AppRoleCredentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rotation = args.rotation
        logins = [self._login(prefix, rotation.generation(role), args.scram_iterations, child)
                  for role, prefix in enumerate((name, f"{name}-b"))]
        (first_password, first_verifier), (_, second_verifier) = logins
        self.username = args.username
        self.password = mark_secret(first_password)
        self.verifier = mark_secret(first_verifier)
        self.alternate_username = alternate_role(args.username)
        self.alternate_verifier = mark_secret(second_verifier)
        self.active_username = (self.username, self.alternate_username)[rotation.active]
        self.active_password = mark_secret(logins[rotation.active][0])
        self.register_outputs({"username": self.username, "alternate_username": self.alternate_username})

    @staticmethod
    def _login(prefix: str, generation: int, iterations: int,
               child: pulumi.ResourceOptions) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        # No keeper for generation 0: the application role's password made before rotation stays as it is.
        keepers = {"rotation": str(generation)} if generation or prefix.endswith("-b") else None
        password = generated_password(f"{prefix}-password", child, keepers=keepers)
        # The salt is no secret (it is part of the verifier); it only has to stay put. A new password
        # (a rotation, or `pulumi up --replace`) keeps it, and the verifier changes with the password.
        salt = random.RandomId(f"{prefix}-scram-salt", byte_length=SALT_BYTES, opts=child)
        verifier: pulumi.Output[str] = pulumi.Output.all(password.result, salt.hex).apply(
            lambda values: scram_verifier(str(values[0]), bytes.fromhex(str(values[1])), iterations)
        )
        return password.result, verifier
