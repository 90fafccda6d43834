"""Database settings AWS cannot change in place, checked against what this stack's last ``up`` recorded.

Some config changes look small and are not: a new ``dbName`` or ``dbUsername`` makes RDS replace the
instance (a new, empty database; without deletion protection and a final snapshot the data is
gone), and a major version upgrade with ``dbApplyImmediately`` off leaves the old parameter group
attached until the maintenance window, so Pulumi's deletion of it fails the ``up``
(``InvalidDBParameterGroupState``). Neither shows in a preview as anything but an ordinary diff.

So every ``up`` exports :data:`RECORD_OUTPUT` (those settings, plain, and the application role's
SCRAM iteration count), and the program reads it back
from its own stack through the engine's ``pulumi:pulumi:readStackOutputs`` (what a ``StackReference``
reads, here synchronously, before the first resource is registered) and refuses such a change with
the key to set back. A stack that has never been deployed, or last deployed before the record
existed, has none: nothing is refused, and its next ``up`` records it.

The same record keeps the application role's verifier as it is: PgBouncer's copy and Postgres'
must be byte-identical, so a new count (a new verifier) is only ever the user's deliberate
``scramIterations`` (:func:`app_scram_iterations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from lifeguard.aws.config import PROJECT, DatabaseConfig, InfraConfigError
from lifeguard.aws.keys import whole_default
from lifeguard.aws.naming import organization
from lifeguard.aws.outputs import DATABASE_SETTINGS
from pgbouncer.scram import ITERATIONS

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
"""The engine's builtin invoke behind ``StackReference`` (the Node SDK's synchronous reads use it too)."""
RECORD_OUTPUT = DATABASE_SETTINGS

POSTGRES_MAJOR_VERSION = "postgresMajorVersion"
DB_NAME = "dbName"
DB_USERNAME = "dbUsername"
SCRAM_ITERATIONS = "scramIterations"
EXISTING_DATABASE = "existingDatabase"
"""In the record of a stack that uses an existing database (its identifier) rather than one it created."""


def record(cfg: DatabaseConfig, scram_iterations: int) -> dict[str, str]:
    """What the stack exports as :data:`RECORD_OUTPUT`: strings, so the record reads back unchanged."""
    if cfg.existing is not None:
        # Not the stack's instance: nothing of it to keep from one `up` to the next but the verifier's count.
        return {EXISTING_DATABASE: cfg.existing, DB_NAME: cfg.db_name, SCRAM_ITERATIONS: str(scram_iterations)}
    return {POSTGRES_MAJOR_VERSION: str(cfg.postgres_major_version), DB_NAME: cfg.db_name, DB_USERNAME: cfg.username,
            SCRAM_ITERATIONS: str(scram_iterations)}


def this_stack() -> str:
    """The fully qualified name of the stack being deployed (``<organization>/<project>/<stack>``)."""
    return f"{organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def stack_outputs() -> Mapping[str, Any]:
    """This stack's outputs from its last ``up``; empty when it has never been deployed."""
    result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": this_stack()})
    outputs = (result.value or {}).get("outputs") or {}
    return outputs if isinstance(outputs, Mapping) else {}


def recorded(outputs: Mapping[str, Any] | None = None) -> Mapping[str, Any] | None:
    """The record of this stack's last ``up``, or ``None`` when there is none."""
    value = (stack_outputs() if outputs is None else outputs).get(RECORD_OUTPUT)
    return value if isinstance(value, Mapping) else None


def app_scram_iterations(configured: int | None, outputs: Mapping[str, Any]) -> int:
    """The application role's verifier's count: ``scramIterations`` when set, else what the stack has.

    A new stack (no outputs) gets the key's default; a deployed stack keeps its recorded count, and one
    deployed before the count was recorded keeps Postgres' 4096, which every verifier had then. So
    upgrading lifeguard never changes a verifier: only setting the key does (docs/roles.md, in order).
    """
    if configured is not None:
        return configured
    if not outputs:
        return whole_default(SCRAM_ITERATIONS)
    kept = _whole((recorded(outputs) or {}).get(SCRAM_ITERATIONS))
    return ITERATIONS if kept is None else kept


def refused_changes(deployed: Mapping[str, Any] | None, cfg: DatabaseConfig) -> list[str]:
    """Each change from ``deployed`` to ``cfg`` that AWS cannot make in place, as a config problem."""
    if deployed is None:
        return []
    created_instance = deployed.get(EXISTING_DATABASE) is None and deployed.get(POSTGRES_MAJOR_VERSION) is not None
    if cfg.existing is not None:
        if not created_instance:
            return []
        key = f"{PROJECT}:{'existingAuroraClusterId' if cfg.existing_cluster_id else 'existingDatabaseInstanceId'}"
        return [f"{key}: this stack created its database instance; an existing database instead would make `pulumi "
                "up` delete that instance (and, without deletion protection and a final snapshot, its data). Unset "
                f"{key}; to use the existing database, deploy it in a new stack."]
    if not created_instance:
        # From an existing database to a new instance: nothing the stack had is replaced.
        return []
    problems: list[str] = []
    for key, new in ((DB_NAME, cfg.db_name), (DB_USERNAME, cfg.username)):
        old = deployed.get(key)
        if isinstance(old, str) and old != new:
            problems.append(
                f"{PROJECT}:{key}: the deployed database has {old!r}; RDS cannot change it in place, so "
                f"{new!r} would replace the instance with a new, empty database (and the pipeline would "
                f"migrate that one). Set {PROJECT}:{key} back to {old!r}. To start over with a new "
                "database on purpose, `pulumi destroy` the stack first."
            )
    old_major = _whole(deployed.get(POSTGRES_MAJOR_VERSION))
    new_major = cfg.postgres_major_version
    key = f"{PROJECT}:{POSTGRES_MAJOR_VERSION}"
    if old_major is not None and new_major < old_major:
        problems.append(f"{key}: the deployed database runs Postgres {old_major}; RDS cannot downgrade it to "
                        f"{new_major}. Set {key} back to {old_major}.")
    elif old_major is not None and new_major > old_major and not cfg.apply_immediately:
        problems.append(
            f"{key}: {old_major} -> {new_major} is a major upgrade, and with {PROJECT}:dbApplyImmediately false "
            f"RDS defers it to the maintenance window while the postgres{old_major} parameter group stays "
            "attached, so deleting that group fails the `up`. Set dbApplyImmediately to true for this "
            "deploy (the upgrade then runs during `pulumi up`, with downtime), or keep "
            f"{key} at {old_major}."
        )
    return problems


def check_deployed_database(cfg: DatabaseConfig) -> int:
    """Before any resource: raise :class:`InfraConfigError` for a change this stack's last ``up`` rules out
    (:func:`refused_changes`); the application role's SCRAM count to use (:func:`app_scram_iterations`)."""
    last_up = stack_outputs()
    refused = refused_changes(recorded(last_up), cfg)
    if refused:
        raise InfraConfigError(refused)
    return app_scram_iterations(cfg.scram_iterations, last_up)


def _whole(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None

