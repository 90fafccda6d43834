"""The pooler image's contract: the names the image reads and writes, and the ones its users set.

Read by both sides of the boundary: the image's own code (the entrypoint, the renderer, the metrics
sidecar) and what starts it (the Pulumi program's task definition and alarms, the local stack).
Standard library only, and importing nothing: the Pulumi program imports it without the image's
dependencies (psycopg for the sidecar, cryptography for the TLS pair).
"""

from __future__ import annotations

# -- the entrypoint (pgbouncer/entrypoint.py) ----------------------------------------------------

SETTINGS_ENV = "LIFEGUARD_PGBOUNCER_SETTINGS"
"""JSON of :class:`pgbouncer.settings.PoolerSettings` (no secrets); the metrics sidecar reads it too."""
CREDENTIALS_ENV = "POOLER_CREDENTIALS"
"""``{"username", "password"}`` (a secret): the database user clients and PgBouncer log in as."""
ALTERNATE_USERNAME_KEY = "alternate_username"
ALTERNATE_PASSWORD_KEY = "alternate_password"  # noqa: S105 (a JSON key)
"""Optional keys of :data:`CREDENTIALS_ENV`'s JSON: the second login role a password rotation switches
``DATABASE_URL`` to, and its SCRAM verifier (docs/roles.md). Top-level keys, so ECS can inject the
verifier alone into the migration job (``valueFrom "<arn>:alternate_password::"``)."""
STATS_CREDENTIALS_ENV = "POOLER_STATS_CREDENTIALS"
"""Same shape (a secret): the read-only console user of the metrics sidecar, one of ``stats_users``."""
CERT_ENV = "POOLER_TLS_CERT"
"""PEM certificate chain PgBouncer presents (public: the task's environment)."""
KEY_ENV = "POOLER_TLS_KEY"
"""PEM private key of that certificate (a secret)."""

STATS_USER = "lifeguard_stats"
"""PgBouncer's read-only console user (``stats_users``) that the metrics sidecar and ``lifeguard local top``
log in as; it exists only in PgBouncer's auth_file, never in Postgres."""

# -- the image's writable directories (its VOLUMEs, see pgbouncer/Dockerfile) ----------------------

IMAGE_RUN_DIR = "/run/pgbouncer"
"""Where the entrypoint writes the rendered ini, userlist.txt and the TLS pair; owned by the runtime user."""
IMAGE_SOCKET_DIR = "/run/pgbouncer-socket"
"""The image's directory for PgBouncer's Unix socket: owned by the runtime user and declared a VOLUME, so
a task volume mounted at exactly this path (shared with the metrics sidecar) is writable by PgBouncer on
Fargate, where bind mounts are otherwise root-owned. Not /var/run/...: that is a symlink to /run in
Debian images, and ECS matches the VOLUME path to containerPath as text."""

# -- the task's shape (lifeguard/aws/pooler.py's task definition; the local stack runs the same) --

CONTAINER_NAME = "pgbouncer"
"""The PgBouncer container (the entrypoint)."""
LISTEN_PORT = 6432
"""PgBouncer's conventional port, distinct from Postgres' 5432: the settings' default ``listen_port``, the
container port, and the port the NLB and the security groups open."""
METRICS_CONTAINER_NAME = "metrics"
"""The metrics sidecar's container, started from the same image."""
RUN_VOLUME = "pgbouncer-run"
"""The task volume mounted at :data:`IMAGE_RUN_DIR` (the root filesystem is read-only)."""
SOCKET_VOLUME = "pgbouncer-socket"
"""The task volume mounted at :data:`IMAGE_SOCKET_DIR`, shared with the metrics sidecar."""

# -- the metrics sidecar (python -m pgbouncer.metrics) --------------------------------------------

METRICS_HOST_ENV = "LIFEGUARD_METRICS_HOST"
METRICS_PORT_ENV = "LIFEGUARD_METRICS_PORT"
METRICS_CREDENTIALS_ENV = "LIFEGUARD_METRICS_CREDENTIALS"
METRICS_USER_ENV = "LIFEGUARD_METRICS_USER"
METRICS_NAMESPACE_ENV = "LIFEGUARD_METRICS_NAMESPACE"
METRICS_SERVICE_ENV = "LIFEGUARD_METRICS_SERVICE"
METRICS_INTERVAL_ENV = "LIFEGUARD_METRICS_INTERVAL"

# -- the metrics it publishes, which the stack's alarms and dashboard read --------------------------

DEFAULT_NAMESPACE = "Lifeguard/PgBouncer"
DEFAULT_SERVICE = "pgbouncer"

# Dimension names. ``Service`` is a stable name for the pooler fleet (not the ECS service's
# generated name), so alarms can name it at `pulumi preview`; ``Task`` tells tasks apart.
DIM_SERVICE = "Service"
DIM_TASK = "Task"
DIM_POOL = "Pool"
DIM_DATABASE = "Database"

CLIENTS_ACTIVE = "ClientsActive"
CLIENTS_WAITING = "ClientsWaiting"
SERVERS_ACTIVE = "ServersActive"
SERVERS_IDLE = "ServersIdle"
MAX_WAIT = "MaxWait"
TPS = "TransactionsPerSecond"
QPS = "QueriesPerSecond"
CLIENT_CONNECTIONS = "ClientConnections"
SERVER_CONNECTIONS = "ServerConnections"
CONSOLE_UP = "ConsoleUp"
CERTIFICATE_DAYS_LEFT = "CertificateDaysLeft"
"""Days until the certificate PgBouncer serves expires (the sidecar reads it from ``POOLER_TLS_CERT``)."""
