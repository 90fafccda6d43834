"""The application role's credentials: a generated password and the SCRAM verifier made from it.

The functions log in as this DML-only role through PgBouncer (``DATABASE_URL`` carries the
password); PgBouncer holds only the verifier, and the migration job sets the same verifier in
Postgres (``migrator/roles.py``). Both copies must be byte-identical for SCRAM pass-through, so the
verifier is computed here, once (``pgbouncer.scram``), with a salt kept in the stack's state and the
stack's iteration count (:func:`lifeguard.aws.deployed.app_scram_iterations`): an unchanged password and
count give an unchanged verifier, hence no secret update and no redeploy.
"""

from typing import Required, TypedDict

import pulumi
import pulumi_random as random

from lifeguard.aws.component_args import whole_number
from lifeguard.aws.secrets import generated_password, mark_secret
from lifeguard.aws.type_token import component_type
from pgbouncer.scram import APP_ITERATIONS, SALT_BYTES, check_app_iterations, scram_verifier


class AppRoleCredentialsArgs(TypedDict, total=False):
    username: Required[str]
    """The application role (the functions log in as it; the migration job creates it)."""
    scram_iterations: int
    """The verifier's PBKDF2 count, for this generated password only (default 16); a deployed role keeps its own."""


class AppRoleCredentials(pulumi.ComponentResource):
    """The application role's generated password and its SCRAM verifier (what PgBouncer and Postgres hold)."""

    password: pulumi.Output[str]
    """The plain password (a secret): only in the pooled `DATABASE_URL`, which the functions log in with."""
    verifier: pulumi.Output[str]
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (a secret): the pooler's secret holds it."""

    def __init__(self, name: str, args: AppRoleCredentialsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Checked before anything is registered; VerifierError names the field.
        iterations = check_app_iterations(
            whole_number(args.get("scram_iterations", APP_ITERATIONS), "scram_iterations"), "scram_iterations")
        username = args["username"]
        if not isinstance(username, str) or not username:
            raise ValueError(f"AppRoleCredentialsArgs.username must be the role's name, got {username!r}")
        super().__init__(component_type(AppRoleCredentials, "database"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = generated_password(f"{name}-password", child)
        # The salt is no secret (it is part of the verifier); it only has to stay put. Replacing the
        # password (`pulumi up --replace`) keeps it, and the verifier changes with the password.
        salt = random.RandomId(f"{name}-scram-salt", byte_length=SALT_BYTES, opts=child)
        verifier: pulumi.Output[str] = pulumi.Output.all(password.result, salt.hex).apply(
            lambda values: scram_verifier(str(values[0]), bytes.fromhex(str(values[1])), iterations)
        )
        # Python programs only (not a schema output: the consumer named the role): the plain name.
        self.username = username
        self.password = mark_secret(password.result)
        self.verifier = mark_secret(verifier)
        self.register_outputs({"username": self.username})
