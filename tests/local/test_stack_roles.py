"""The local stack has the two roles AWS has: the functions are the application role, through PgBouncer."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from lifeguard.stack.roles import OWNER_USER
from lifeguard.stack.stack import APP_USER, LocalStack, StackOptions
from pgbouncer.scram import APP_ITERATIONS, parse_verifier
from pgbouncer.settings import render_userlist


def test_up_provisions_the_application_role_and_pgbouncer_holds_its_verifier(
    stack_dir: Path, ports: tuple[int, int]
) -> None:
    stack = LocalStack(stack_dir)
    run_output: list[str] = []
    config = stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1], durable=False), progress=run_output.append)
    text = "\n".join(run_output)
    assert f"application role {APP_USER} created" in text
    for secret in (stack.app_password(), stack.owner_password(), stack.app_verifier()):
        assert secret not in text

    with psycopg.connect(stack.superuser_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_USER,)).fetchone()
    assert row == (stack.app_verifier(),)
    # A new stack's count is the one for its generated password (pgbouncer.scram.APP_ITERATIONS).
    assert parse_verifier(stack.app_verifier()).iterations == APP_ITERATIONS
    [pooler] = stack.poolers(config)
    userlist = Path(pooler.settings.auth_file).read_text()
    assert userlist.startswith(render_userlist({APP_USER: stack.app_verifier()}))
    assert OWNER_USER not in userlist and stack.app_password() not in userlist

    with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
        assert conn.execute("SELECT count(*) > 0 FROM orgs").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE intruder (id int)")
    with psycopg.connect(stack.direct_url(config), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (OWNER_USER,)
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'orgs'").fetchone() == (OWNER_USER,)

    # A new password: the job re-provisions Postgres' side, a pooler restart re-renders auth_file.
    old_password, old_verifier = stack.app_password(), stack.app_verifier()
    stack.password_file.write_text("a-new-local-password\n")
    assert stack.migrate(config).returncode == 0
    stack.restart_poolers(config)
    assert stack.app_verifier() != old_verifier
    with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stack.pooled_url(config).replace("a-new-local-password", old_password), connect_timeout=10)
    # The same password keeps the same verifier (the salt is kept): nothing to redo.
    assert LocalStack(stack_dir).app_verifier() == stack.app_verifier()
