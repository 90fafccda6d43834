"""The names of the two connection strings for one database: the pooled one and the direct one.

The one fact every deployable shares: the functions read the pooled URL (through PgBouncer), the
migration job only the direct one (straight to Postgres) and refuses the pooled one by name; the
Pulumi program and the local stack hand each its own. A shared package, like ``redaction``, because
the function zip and the migration image each ship only their own folder plus the shared packages
(``lifeguard.aws.build_context.SHARED_PACKAGE_NAMES``). Standard library only, and importing nothing.
"""

from __future__ import annotations

POOLED_URL_ENV = "DATABASE_URL"
"""The pooled URL itself (locally)."""
POOLED_URL_SECRET_ARN_ENV = "DATABASE_URL_SECRET_ARN"  # noqa: S105 (a variable name)
"""The Secrets Manager secret holding the pooled URL (on AWS): the value never sits in the environment."""
DIRECT_URL_ENV = "DATABASE_URL_UNPOOLED"
"""The direct URL (straight to Postgres, never the pooler); on AWS injected by ECS from Secrets Manager."""
DIRECT_URL_SECRET_ARN_ENV = "DATABASE_URL_UNPOOLED_SECRET_ARN"  # noqa: S105 (a variable name)
"""Instead of the direct URL: the ARN of the secret holding it, read with boto3."""
