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

from typing import Required, TypedDict

import pulumi
import pulumi_random as random

from lifeguard.aws.component_args import whole_number
from lifeguard.aws.secrets import generated_password, mark_secret
from lifeguard.aws.type_token import component_type
from lifeguard.rotation import RotationState
from migrator.contract import alternate_role
from pgbouncer.scram import APP_ITERATIONS, SALT_BYTES, check_app_iterations, scram_verifier


class AppRoleCredentialsArgs(TypedDict, total=False):
    username: Required[str]
    """The application role; the migration job creates it and its alternate `<username>_b`."""
    scram_iterations: int
    """The verifiers' PBKDF2 count, for these generated passwords only (default 16); a deployed role keeps its own."""
    rotation: int
    """Password rotations started (default 0): rotation N gives login role N % 2 a new password (docs/roles.md)."""
    switched: int
    """The rotation `DATABASE_URL` uses (default 0): login role `switched % 2`, once Postgres and PgBouncer hold it."""


class AppRoleCredentials(pulumi.ComponentResource):
    """The application's two login roles' generated passwords and SCRAM verifiers (what PgBouncer and Postgres hold)."""

    password: pulumi.Output[str]
    """The application role's plain password (a secret)."""
    verifier: pulumi.Output[str]
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (a secret): the pooler's secret holds it."""
    alternate_verifier: pulumi.Output[str]
    """The alternate login role's verifier (a secret): the pooler's secret holds it too."""
    active_password: pulumi.Output[str]
    """The plain password of the login role `DATABASE_URL` uses (a secret): only in `DATABASE_URL`."""

    def __init__(self, name: str, args: AppRoleCredentialsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Checked before anything is registered; VerifierError names the field.
        iterations = check_app_iterations(
            whole_number(args.get("scram_iterations", APP_ITERATIONS), "scram_iterations"), "scram_iterations")
        username = args["username"]
        if not isinstance(username, str) or not username:
            raise ValueError(f"AppRoleCredentialsArgs.username must be the role's name, got {username!r}")
        rotation = RotationState(whole_number(args.get("rotation", 0), "rotation"),
                                 whole_number(args.get("switched", 0), "switched"))
        if not 0 <= rotation.switched <= rotation.rotation:
            raise ValueError("AppRoleCredentialsArgs.switched must be between 0 and rotation "
                             f"(got rotation {rotation.rotation}, switched {rotation.switched})")
        super().__init__(component_type(AppRoleCredentials, "database"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        logins = [self._login(prefix, rotation.generation(role), iterations, child)
                  for role, prefix in enumerate((name, f"{name}-b"))]
        (first_password, first_verifier), (_, second_verifier) = logins
        # Python programs only (not schema outputs: the consumer named the role): the plain names.
        self.username = username
        self.alternate_username = alternate_role(username)
        self.active_username = (self.username, self.alternate_username)[rotation.active]
        self.password = mark_secret(first_password)
        self.verifier = mark_secret(first_verifier)
        self.alternate_verifier = mark_secret(second_verifier)
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
