"""The application role: the DML-only login the functions use through PgBouncer.

The migration job logs in as the role that owns the schema (on RDS the master user) and, under
its migration lock and before any migration, makes the application role exist exactly as the
functions need it, every run (idempotent). The grants are held by a ``NOLOGIN`` role,
:func:`~migrator.contract.group_role`, of which the login role (and, for password rotation, a second
login role, :func:`~migrator.contract.alternate_role`) is a member; rights granted to the login role
directly by an earlier version move to that role in the same transaction:

* created if missing, ``LOGIN`` and nothing else (no ``CREATEDB``, ``CREATEROLE``, superuser,
  replication or membership in any role); an existing role with more than that is refused, not
  quietly used;
* its password set from a SCRAM verifier, never a plain password: the job is given the very
  verifier PgBouncer holds, and Postgres stores it as given, byte for byte, which is what lets
  PgBouncer log in by SCRAM pass-through. The job never sees the plain password;
* ``CONNECT`` on the database, ``USAGE`` on the schema, ``SELECT, INSERT, UPDATE, DELETE`` on its
  tables and ``USAGE, SELECT`` on its sequences, and the same by ``ALTER DEFAULT PRIVILEGES`` for
  what later migrations (run by this same role) create; no ``TRUNCATE``, ``REFERENCES`` or
  ``TRIGGER``, nothing on the migrator's bookkeeping table or lock view (:mod:`migrator.lock`) nor on
  a migration tool's bookkeeping table (:mod:`migrator.bookkeeping`), and no ``CREATE`` anywhere (checked).

All of it is one transaction: a failure leaves the role as it was. The verifier never appears in
a log line or an error (Postgres' own messages here name the role at most).

Configuration (the job's environment): ``LIFEGUARD_APP_ROLE`` (the role name) and
``LIFEGUARD_APP_ROLE_VERIFIER`` (its ``SCRAM-SHA-256$...`` verifier, a secret).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from migrator.bookkeeping import BookkeepingTable, all_tables
from migrator.contract import (
    APP_ROLE_B_VERIFIER_ENV,
    APP_ROLE_ENV,
    APP_ROLE_VERIFIER_ENV,
    MAX_APP_ROLE_NAME,
    alternate_role,
    group_role,
)
from migrator.errors import MigratorConfigError
from redaction import Redactor

TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The verifier's shape, as Postgres recognises one (anything else it would hash as a password).
# The migrator image carries only migrator/, so it cannot import pgbouncer.scram (the full parser
# the stack computes verifiers with); tests/migrator/test_roles.py checks the two agree.
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_KEY_B64 = r"[A-Za-z0-9+/]{43}="
_VERIFIER = re.compile(rf"^SCRAM-SHA-256\$[1-9][0-9]{{0,9}}:{_B64}\${_KEY_B64}:{_KEY_B64}$")

log = logging.getLogger("migrator")


class RoleRefused(MigratorConfigError):
    """The application role exists with rights beyond DML, or would get some; nothing was changed."""


@dataclass(frozen=True)
class AppRole:
    name: str
    verifier: str = field(repr=False)
    alternate_verifier: str | None = field(default=None, repr=False)
    """The second login role's (:attr:`alternate`) verifier; ``None``: that role is left as it is."""

    def __post_init__(self) -> None:
        if (not _ROLE_NAME.match(self.name) or len(self.name) > MAX_APP_ROLE_NAME
                or self.name.startswith(("pg_", "rds"))):
            raise MigratorConfigError(
                f"{APP_ROLE_ENV} must be a lower-case Postgres name (letters, digits, '_', at most "
                f"{MAX_APP_ROLE_NAME}, not starting with 'pg_' or 'rds'); got {self.name!r}"
            )
        for variable, verifier in ((APP_ROLE_VERIFIER_ENV, self.verifier),
                                   (APP_ROLE_B_VERIFIER_ENV, self.alternate_verifier)):
            if verifier is not None and not _VERIFIER.match(verifier):
                raise MigratorConfigError(
                    f"{variable} is not a SCRAM-SHA-256 verifier "
                    "(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>); "
                    "give the verifier PgBouncer holds, not a password"
                )

    @property
    def alternate(self) -> str:
        return alternate_role(self.name)

    @property
    def group(self) -> str:
        return group_role(self.name)

    @property
    def logins(self) -> list[tuple[str, str]]:
        """The login roles this run sets, with their verifiers."""
        pairs = [(self.name, self.verifier)]
        if self.alternate_verifier is not None:
            pairs.append((self.alternate, self.alternate_verifier))
        return pairs

    @property
    def secrets(self) -> list[str]:
        """What a log line must never show."""
        return [verifier for _, verifier in self.logins]


def app_role_from_env(environ: Mapping[str, str]) -> AppRole | None:
    """The application role the job provisions, or ``None`` when neither variable is set."""
    name = environ.get(APP_ROLE_ENV, "").strip()
    verifier = environ.get(APP_ROLE_VERIFIER_ENV, "").strip()
    if not name and not verifier:
        return None
    if not name or not verifier:
        missing = APP_ROLE_ENV if not name else APP_ROLE_VERIFIER_ENV
        raise MigratorConfigError(
            f"{missing} is not set; the application role needs both {APP_ROLE_ENV} and {APP_ROLE_VERIFIER_ENV}"
        )
    alternate = environ.get(APP_ROLE_B_VERIFIER_ENV, "").strip() or None
    return AppRole(name, verifier, alternate)


def app_role_of_run(environ: Mapping[str, str], redactor: Redactor) -> AppRole | None:
    """The run's application role (:func:`app_role_from_env`), its verifiers registered with ``redactor``;
    one step for the sample runner and the wrapper."""
    app_role = app_role_from_env(environ)
    if app_role is None:
        log.info("no application role to provision (%s and %s are unset)", APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV)
    else:
        for secret in app_role.secrets:
            redactor.add_secret(secret)
    return app_role


@dataclass(frozen=True)
class Provisioned:
    role: str
    created: bool
    schema: str


def _one(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed | str, params: Any = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _refuse_extra_rights(conn: psycopg.Connection[Any], name: str, schema: str, member_of: str | None) -> None:
    """Refuse a role that could do more than DML here: attributes, memberships (but ``member_of``), ownership."""
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
        (name,),
    ).fetchone()
    assert row is not None
    attributes = [label for label, flag in zip(("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"),
                                               row, strict=True) if flag]
    if attributes:
        raise RoleRefused(
            f"role {name} exists with {', '.join(attributes)}: the application role may only run DML. Remove "
            f"those attributes (ALTER ROLE {name} NO{' NO'.join(attributes)}) or set another application role name"
        )
    groups = [str(r[0]) for r in conn.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s ORDER BY 1", (name,)).fetchall()
        if r[0] != member_of]
    if groups:
        raise RoleRefused(
            f"role {name} is a member of {', '.join(groups)}, whose rights it would use: the application role "
            f"may only run DML. REVOKE {', '.join(groups)} FROM {name}, or set another application role name"
        )
    owned = _one(conn,
                 "SELECT concat_ws(', ',"
                 " (SELECT 'database ' || datname FROM pg_database WHERE datname = current_database()"
                 "   AND datdba = (SELECT oid FROM pg_roles WHERE rolname = %(r)s)),"
                 " (SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = %(s)s"
                 "   AND nspowner = (SELECT oid FROM pg_roles WHERE rolname = %(r)s)),"
                 " (SELECT count(*) || ' relation(s)' FROM pg_class WHERE relowner ="
                 "   (SELECT oid FROM pg_roles WHERE rolname = %(r)s) HAVING count(*) > 0))",
                 {"r": name, "s": schema})
    if owned:
        raise RoleRefused(
            f"role {name} owns {owned} in this database, so it could ALTER or DROP them: the application role "
            "must own nothing. Reassign them to the migration role (REASSIGN OWNED BY ... TO ...) or set another "
            "application role name"
        )


def provision_app_role(conn: psycopg.Connection[Any], role: AppRole, schema: str,
                       private: Sequence[sql.Composable] = (), *,
                       bookkeeping: Iterable[BookkeepingTable] = (),
                       default_privileges: bool = True) -> Provisioned:
    """Create or update ``role`` and its grants in ``schema``, in one transaction (``conn`` is autocommit).

    ``private`` are the migrator's own objects (its bookkeeping table and lock view), which the
    application role must not touch: with a write right on the lock view it could take the migration lock.
    Migration tools' bookkeeping tables (the known ones, :mod:`migrator.bookkeeping`, and
    ``bookkeeping``) that exist, and their sequences, get no privilege either.

    ``default_privileges=False`` takes the role's default privileges back instead of granting them:
    the wrapper (:mod:`migrator.wrapper`) does so while another tool runs, so a bookkeeping table that
    tool creates is never granted, not even until the run ends; provisioning again afterwards with
    ``True`` grants the new tables and restores the defaults.
    """
    me = str(_one(conn, "SELECT current_user"))
    logins = role.logins
    for login, _ in logins:
        if login == me:
            raise MigratorConfigError(
                f"the application role {login} is the role the migration job logs in as; the functions' role "
                "must be another one (it gets DML only)"
            )
    group, schema_id = sql.Identifier(role.group), sql.Identifier(schema)
    created: dict[str, bool] = {}
    with conn.transaction():
        database = str(_one(conn, "SELECT current_database()"))
        if _role_exists(conn, role.group):
            _refuse_extra_rights(conn, role.group, schema, None)
            if _one(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role.group,)):
                raise RoleRefused(
                    f"role {role.group} exists and may log in; lifeguard needs that name for the NOLOGIN role that "
                    f"holds the application's DML rights. ALTER ROLE {role.group} NOLOGIN if nothing logs in as it, "
                    "or set another application role name"
                )
        else:
            conn.execute(sql.SQL("CREATE ROLE {} WITH NOLOGIN NOCREATEDB NOCREATEROLE").format(group))
        for login, verifier in logins:
            name = sql.Identifier(login)
            created[login] = not _role_exists(conn, login)
            if created[login]:
                conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN INHERIT NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    name, sql.Literal(verifier)))
            else:
                _refuse_extra_rights(conn, login, schema, role.group)
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN INHERIT PASSWORD {}").format(
                    name, sql.Literal(verifier)))
            # Granted before the login's own rights are taken back: in one transaction, no session sees a gap.
            if not _one(conn, "SELECT count(*) FROM pg_auth_members"
                        " WHERE roleid = %s::regrole AND member = %s::regrole", (role.group, login)):
                conn.execute(sql.SQL("GRANT {} TO {}").format(group, name))
        statements = [
            # Exactly DML: whatever else was granted on these tables before is taken back first.
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema_id, group),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema_id, group),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), group),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, group),
            sql.SQL(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {{}} TO {{}}").format(schema_id, group),
            sql.SQL(f"GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {{}} TO {{}}").format(schema_id, group),
            # Tables and sequences later migrations create (as this role) are granted as they are made.
            *_default_privileges(schema_id, group, grant=default_privileges),
        ]
        for login, _ in logins:
            # The login roles hold nothing of their own (an earlier version granted the login role directly).
            name = sql.Identifier(login)
            statements += [
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema_id, name),
                sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema_id, name),
                *_default_privileges(schema_id, name, grant=False),
            ]
        # The migrator's bookkeeping and lock are not the application's (GRANT ... ON ALL TABLES covers views).
        holders = [group, *(sql.Identifier(login) for login, _ in logins)]
        statements += [sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(obj, holder)
                       for obj in private for holder in holders]
        for statement in statements:
            conn.execute(statement)
        tables = all_tables(bookkeeping)
        withheld = _withhold_bookkeeping(conn, role.group, schema, tables)
        for login, _ in logins:
            # Revokes what a login holds itself, then checks what it may use in all (through the group too).
            _withhold_bookkeeping(conn, login, schema, tables)
        for holder in (role.group, *(login for login, _ in logins)):
            _refuse_create(conn, holder, schema, database)
    for login, _ in logins:
        log.info("application role %s %s: DML on the tables and sequences of schema %s, as a member of %s%s%s",
                 login, "created" if created[login] else "updated", schema, role.group,
                 f", none on bookkeeping table(s) {', '.join(withheld)}" if withheld else "",
                 "" if default_privileges else "; its default privileges are off while the migration command runs")
    return Provisioned(role.name, created[role.name], schema)


def _role_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(_one(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)) == 1)


def _default_privileges(schema: sql.Identifier, name: sql.Identifier, *, grant: bool) -> list[sql.Composed]:
    verb, to = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    return [
        sql.SQL(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {{}} {verb} {privileges} ON {kind} {to} {{}}").format(schema, name)
        for privileges, kind in ((TABLE_PRIVILEGES, "TABLES"), (SEQUENCE_PRIVILEGES, "SEQUENCES"))
    ]


def _withhold_bookkeeping(conn: psycopg.Connection[Any], name: str, schema: str,
                          tables: Sequence[BookkeepingTable]) -> list[str]:
    """Revoke everything on the bookkeeping tables that exist and their sequences; their names.

    A grant that stays (to PUBLIC, which only the table's owner can take back) is refused, naming it.
    """
    found = conn.execute(
        "SELECT c.oid, n.nspname, c.relname,"
        " ARRAY(SELECT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid"
        "       WHERE d.refobjid = c.oid AND d.classid = 'pg_class'::regclass AND s.relkind = 'S'"
        "       AND d.deptype IN ('a', 'i'))"
        " FROM unnest(%s::text[], %s::text[]) AS t(nsp, rel)"
        " JOIN pg_namespace n ON n.nspname = t.nsp JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 2, 3",
        ([t.schema or schema for t in tables], [t.name for t in tables]),
    ).fetchall()
    role = sql.Identifier(name)
    withheld = []
    for oid, nsp, rel, sequences in found:
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(nsp, rel), role))
        for sequence in sequences:
            conn.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sql.SQL(sequence), role))
        left = _one(conn, "SELECT has_table_privilege(%s, %s::oid,"
                    " 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')", (name, oid))
        if left:
            raise RoleRefused(
                f"role {name} keeps a privilege on the migration tool's bookkeeping table {nsp}.{rel} (granted to "
                f"PUBLIC or through a role), which could make the tool skip or repeat a migration: as its owner run "
                f"REVOKE ALL ON {nsp}.{rel} FROM PUBLIC"
            )
        withheld.append(rel if nsp == schema else f"{nsp}.{rel}")
    return withheld


def _refuse_create(conn: psycopg.Connection[Any], name: str, schema: str, database: str) -> None:
    """No ``CREATE`` on the schema or the database, whether granted to the role or to PUBLIC.

    Before Postgres 15 PUBLIC may create in schema ``public``: the job takes that back. Only the
    owner can, and Postgres only warns when a REVOKE has no effect, so each check is repeated after.
    """
    targets = (
        ("SCHEMA", schema, "SELECT has_schema_privilege(%s, %s, 'CREATE')", "schema", "CREATE"),
        ("DATABASE", database, "SELECT has_database_privilege(%s, %s, 'CREATE')", "database", "CREATE schemas"),
    )
    for kind, target, check, what, verb in targets:
        if not _one(conn, check, (name, target)):
            continue
        conn.execute(sql.SQL(f"REVOKE CREATE ON {kind} {{}} FROM PUBLIC, {{}}").format(
            sql.Identifier(target), sql.Identifier(name)))
        if _one(conn, check, (name, target)):
            raise RoleRefused(
                f"role {name} could {verb} in {what} {target} (granted to it or to PUBLIC) and the migration "
                f"role may not take that back: as the {what}'s owner run REVOKE CREATE ON {kind} {target} FROM "
                f"PUBLIC, {name}"
            )
