"""``lifeguard local rotate``: a new password for the application, with no failed login on the way.

``DATABASE_URL`` logs in as one of two login roles (:func:`lifeguard.stack.roles.login_roles`), both
members of the ``NOLOGIN`` role that holds the DML grants. A rotation changes the password of the
one ``DATABASE_URL`` does *not* use, so at no moment does the pooler or Postgres hold a verifier the
functions' password does not match:

1. a new password for the inactive role (its verifier: same salt, new password);
2. the migration job sets both roles' verifiers in Postgres: the active one's unchanged, the
   inactive one's new (``ALTER ROLE ... PASSWORD '<verifier>'``);
3. PgBouncer gets both verifiers (:meth:`~lifeguard.stack.pooler.PoolerProcess.reload_auth_file`:
   ``auth_file`` rewritten, then ``SIGHUP``). Then a login through each PgBouncer with the new
   password must work, which proves steps 2 and 3 on the real path;
4. ``DATABASE_URL`` (``pooled.url``, the functions' secret, and ``rotation.json``) switches to the
   rotated role. Functions read it at a cold start, and again when a login is refused.

The role that was active keeps its password until the *next* rotation changes it, so a warm
function that still holds it keeps working. A step that fails changes nothing after it: the active
role still logs in everywhere, and ``lifeguard local rotate`` run again goes on with the same new
password (``rotation.json`` says the rotation was started and not switched). Each step is logged;
no password or verifier is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from lifeguard.rotation import RotationState
from lifeguard.stack.roles import LoginRole, new_password, save_rotation
from lifeguard.stack.stack import STACK_ERRORS, LocalStack, StackConfig, StackError
from pgbouncer.private_file import write_private
from pgbouncer.settings import render_userlist

Progress = Callable[[str], None]
LOGIN_CHECK_TIMEOUT_S = 60.0
"""How long step 3 waits for the rotated role's login through each PgBouncer. The login needs a server
connection of that role's pool, and both roles' pools share ``max_db_connections``: while the active
role keeps every server busy with clients queued, the new pool gets one only when one goes idle
(PgBouncer evicts idle servers only). A rotation does not switch before that; past the timeout it stops,
with everything still working, to be rerun in a quieter moment."""


# What a reload or the login check may raise: each ends the rotation at step 3, everything still working.
_STEP_ERRORS: tuple[type[Exception], ...] = (OSError, psycopg.Error, *STACK_ERRORS)


class RotationError(StackError):
    """A rotation step failed; the message says which, that the active role still works, and what to rerun."""


@dataclass(frozen=True)
class Rotated:
    rotation: int
    active: str
    previous: str


def rotate(stack: LocalStack, progress: Progress) -> Rotated:
    """Rotate the inactive login role's password and switch ``DATABASE_URL`` to it (see the module)."""
    status = stack.status()
    config = status.config
    if config is None or not status.up:
        images = status.postgres_running and status.poolers_running == 0
        raise StackError(
            f"the local stack in {stack.state_dir} is not running: run `lifeguard local up` first"
            + (" (a stack started with `up --images` runs PgBouncer in a container, which `rotate` does not "
               "reload: rotate on the stack `lifeguard local up` starts)" if images else ""))
    with stack.exclusive(progress):
        return _rotate(stack, config, progress)


def _rotate(stack: LocalStack, config: StackConfig, progress: Progress) -> Rotated:
    state = stack.rotation_state()
    logins = stack.logins(config)
    number = state.rotation if state.pending else state.switched + 1
    active, target = logins[state.active], logins[number % 2]
    step = f"rotation {number}"
    rerun = "run `lifeguard local rotate` again: it goes on with the same new password"
    still = f"DATABASE_URL still logs in as {active.name}, unchanged everywhere"

    if state.pending and target.password_file.exists():
        progress(f"{step}: step 1/4: {target.name}'s new password was made by an unfinished run; going on with it")
    else:
        write_private(target.password_file, new_password() + "\n", atomic=True)
        save_rotation(stack.rotation_file, RotationState(number, state.switched))
        progress(f"{step}: step 1/4: a new password for {target.name}, the role DATABASE_URL does not use "
                 f"(it logs in as {active.name})")

    progress(f"{step}: step 2/4: the migration job sets {target.name}'s new verifier in Postgres "
             f"({active.name}'s stays as it is)")
    run = stack.migrate(config)
    for line in run.output.splitlines():
        progress(f"  migrator: {line}")
    if run.returncode != 0:
        raise RotationError(f"{step} stopped at step 2/4: the migration job failed (exit code {run.returncode}; "
                            f"its output is above). {still}. Fix what it says, then {rerun}")

    progress(f"{step}: step 3/4: PgBouncer reloads auth_file with both roles' verifiers")
    try:
        reload_poolers(stack, config)
        check_login(stack, config, target)
    except _STEP_ERRORS as exc:
        raise RotationError(f"{step} stopped at step 3/4: {_reason(exc)}. {still}; {target.name}'s new password is "
                            f"set in Postgres but DATABASE_URL was not switched to it. Then {rerun}") from None

    save_rotation(stack.rotation_file, RotationState(number, number))
    stack.write_pooled_secret(config)
    progress(f"{step}: step 4/4: DATABASE_URL now logs in as {target.name}; functions pick it up at their next "
             f"cold start or refused login. {active.name}'s password keeps working until the next rotation")
    return Rotated(number, target.name, active.name)


def _reason(exc: BaseException) -> str:
    # libpq's first line names host, port and user, never a password; our own errors are written for people.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def reload_poolers(stack: LocalStack, config: StackConfig) -> None:
    """Every running PgBouncer re-reads an ``auth_file`` holding both login roles' verifiers."""
    userlist = render_userlist(stack.pooler_credentials(config))
    processes = [p for p in stack.poolers(config) if p.pid() is not None]
    if len(processes) != config.pooler_processes:
        raise StackError(f"{len(processes)} of {config.pooler_processes} PgBouncer processes are running; "
                         "run `lifeguard local up` first")
    for process in processes:
        process.reload_auth_file(userlist)


def check_login(stack: LocalStack, config: StackConfig, login: LoginRole,
                timeout: float = LOGIN_CHECK_TIMEOUT_S) -> None:
    """``login`` logs in through every PgBouncer process with its password file's password.

    Each process is reached on its own Unix socket (on the shared TCP port a login reaches any one of
    them), and the login needs a server connection, so Postgres' copy of the verifier is checked too.
    """
    password = stack.login_password(login)
    for process in stack.poolers(config):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(host=process.settings.unix_socket_dir, port=process.settings.listen_port,
                                     user=login.name, password=password, dbname=config.dbname,
                                     connect_timeout=5, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise StackError(f"PgBouncer ({process.root.name}) did not accept {login.name}'s new password "
                                     f"within {timeout:.0f} s (see {process.log_file})") from None
                time.sleep(0.1)
