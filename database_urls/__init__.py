"""The names of the two connection strings for one database: the pooled one and the direct one.

The one fact every deployable shares: the functions read the pooled URL (through PgBouncer), the
migration job only the direct one (straight to Postgres) and refuses the pooled one by name; the
Pulumi program and the local stack hand each its own. A shared package, like ``redaction``, because
the function zip and the migration image each ship only their own folder plus the shared packages
(``lifeguard.aws.build_context.SHARED_PACKAGE_NAMES``). Standard library only, and importing nothing.
"""

from __future__ import annotations

from urllib.parse import quote

POOLED_URL_ENV = "DATABASE_URL"
"""The pooled URL itself (locally)."""
POOLED_URL_SECRET_ARN_ENV = "DATABASE_URL_SECRET_ARN"  # noqa: S105 (a variable name)
"""The Secrets Manager secret holding the pooled URL (on AWS): the value never sits in the environment."""
DIRECT_URL_ENV = "DATABASE_URL_UNPOOLED"
"""The direct URL (straight to Postgres, never the pooler); on AWS injected by ECS from Secrets Manager."""
DIRECT_URL_SECRET_ARN_ENV = "DATABASE_URL_UNPOOLED_SECRET_ARN"  # noqa: S105 (a variable name)
"""Instead of the direct URL: the ARN of the secret holding it, read with boto3."""


def verified_url(user: str, password: str, host: str, port: int | str, db_name: str, root_cert: str) -> str:
    """A URL whose client checks the server's certificate names ``host`` and chains to ``root_cert``
    (``verify-full``): for the pooled URL, PgBouncer's certificate for the NLB from the stack's own CA;
    for the direct one, the database endpoint's certificate from the RDS bundle. User and password are
    percent-encoded whole (``/``, ``@``, ``:`` ... included), so any password composes to a valid URL.

    One definition for both sides: the Pulumi program composes the stored URLs with it, the migration
    job composes the direct URL at run time from the owner secret's parts (``migrator.source``)."""
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db_name}"
        f"?sslmode=verify-full&sslrootcert={quote(root_cert, safe='/')}"
    )
