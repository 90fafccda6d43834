"""The migration job's contract: the environment ``python -m migrator`` reads.

Read by both sides: the migrator (its image ships this folder) and what starts it (the Pulumi program's
migration task definition, the local stack). Standard library only, and importing nothing: the Pulumi
program imports it without psycopg. The exit codes are the migrator's own (:class:`migrator.errors.ExitCode`):
the pipeline passes them through without reading them.
"""

from __future__ import annotations

CONTAINER_NAME = "migrator"
"""The migration task's one container (lifeguard/aws/migration_job.py; the local stack runs the same)."""

APP_ROLE_ENV = "LIFEGUARD_APP_ROLE"
"""The DML-only application role ``apply`` provisions first (with :data:`APP_ROLE_VERIFIER_ENV`)."""
APP_ROLE_VERIFIER_ENV = "LIFEGUARD_APP_ROLE_VERIFIER"
"""That role's SCRAM verifier, never a password."""
APP_ROLE_B_VERIFIER_ENV = "LIFEGUARD_APP_ROLE_B_VERIFIER"
"""The verifier of the second login role, :func:`alternate_role`, for password rotation; optional (without
it only :data:`APP_ROLE_ENV` is provisioned)."""
APP_ROLE_SECRET_ENVS = (APP_ROLE_VERIFIER_ENV, APP_ROLE_B_VERIFIER_ENV)
"""What a wrapped migration tool never inherits."""
ROTATION_PARAMETER_ENV = "LIFEGUARD_ROTATION_PARAMETER"
"""The SSM parameter in which a successful run records :data:`ROTATION_ENV` (the stack reads it before
switching ``DATABASE_URL``, docs/roles.md); unset: nothing is recorded."""
ROTATION_ENV = "LIFEGUARD_ROTATION"
"""The password rotation whose verifiers the run sets (the stack's ``appPasswordRotation``)."""
MAX_APP_ROLE_NAME = 59
"""63 (Postgres' limit) less the longest suffix below, so the derived names are never cut short."""
BOOKKEEPING_TABLES_ENV = "LIFEGUARD_BOOKKEEPING_TABLES"
"""Extra migration-tool bookkeeping tables (``NAME`` or ``SCHEMA.NAME``, comma-separated) the application
role gets no privilege on, besides the known tools' (:mod:`migrator.bookkeeping`)."""
BASE_IMAGE_ARG = "LIFEGUARD_MIGRATOR_IMAGE"
"""The build argument naming our migrator image, for a user's Dockerfile that starts ``FROM`` it."""
# The direct URL from its parts, for a database whose owner's password the stack does not hold (an existing
# RDS instance or Aurora cluster, or RDS's managed master secret): ECS injects the owner's username and
# password from that secret's JSON keys at run time, the rest is plain environment, and the migrator composes
# DATABASE_URL_UNPOOLED (verify-full) from them (migrator.source.url_from_parts).
OWNER_USERNAME_ENV = "LIFEGUARD_DB_OWNER_USERNAME"
OWNER_PASSWORD_ENV = "LIFEGUARD_DB_OWNER_PASSWORD"  # noqa: S105 (a variable name)
DB_HOST_ENV = "LIFEGUARD_DB_HOST"
DB_PORT_ENV = "LIFEGUARD_DB_PORT"
DB_NAME_ENV = "LIFEGUARD_DB_NAME"
DB_ROOT_CERT_ENV = "LIFEGUARD_DB_ROOT_CERT"
"""The CA bundle the server's certificate must chain to (the image's RDS bundle on AWS)."""
URL_PART_ENVS = (OWNER_USERNAME_ENV, OWNER_PASSWORD_ENV, DB_HOST_ENV, DB_PORT_ENV, DB_NAME_ENV, DB_ROOT_CERT_ENV)
DEMO_DATA_ENV = "LIFEGUARD_DEMO_DATA"
"""``1`` (the default) applies the demo-data migrations, ``0`` skips them (production stacks)."""


def runner_command(*args: str, python: str = "python3") -> list[str]:
    """``python3 -m migrator ARGS``: the migrator's command line, as its image runs it."""
    return [python, "-m", "migrator", *args]


def wrapped_command(command: list[str], python: str = "python3") -> list[str]:
    """``python3 -m migrator run -- COMMAND``: a user's migration tool run behind the migrator's guard,
    lock and role provisioning (:mod:`migrator.wrapper`), as the job and the local stack start it."""
    return runner_command("run", "--", *command, python=python)


def alternate_role(app_role: str) -> str:
    """The second login role: a rotation changes the password of whichever login role the functions
    do not use, so the one they use keeps working throughout (docs/roles.md)."""
    return f"{app_role}_b"


def group_role(app_role: str) -> str:
    """The ``NOLOGIN`` role that holds the DML grants; both login roles are its members."""
    return f"{app_role}_dml"
