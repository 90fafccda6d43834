"""``lifeguard local rotate``: two login roles, the inactive one rotated, DATABASE_URL switched last."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from lifeguard.rotation import RotationState
from lifeguard.stack.roles import RotationStateError, load_rotation, save_rotation
from lifeguard.stack.rotation import RotationError, rotate
from lifeguard.stack.stack import APP_USER, LocalStack, StackConfig, StackOptions
from migrator.contract import alternate_role


def pooled_login(stack: LocalStack, config: StackConfig, user: str, password: str) -> str:
    """Log in through PgBouncer as ``user`` and run a DML statement; who Postgres says we are."""
    url = stack.pooled_url(config)
    active = stack.active_login(config)
    url = url.replace(f"://{active.name}:{stack.login_password(active)}@", f"://{user}:{password}@")
    with psycopg.connect(url, connect_timeout=10, prepare_threshold=None) as conn:
        conn.execute("UPDATE orgs SET credits = credits WHERE id = (SELECT min(id) FROM orgs)")
        return str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]


def stored_verifiers(stack: LocalStack, config: StackConfig) -> dict[str, str]:
    with psycopg.connect(stack.superuser_url(config), connect_timeout=10) as conn:
        rows = conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
                            ([login.name for login in stack.logins(config)],)).fetchall()
    return {str(name): str(verifier) for name, verifier in rows}


@pytest.fixture
def stack(stack_dir: Path, ports: tuple[int, int]) -> LocalStack:
    stack = LocalStack(stack_dir)
    stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1], durable=False))
    return stack


def test_two_rotations_alternate_the_roles_and_the_old_password_goes_at_the_second(stack: LocalStack) -> None:
    config = stack.require_config()
    first, second = stack.logins(config)
    assert (first.name, second.name) == (APP_USER, alternate_role(APP_USER))
    assert stack.pooled_secret_file.read_text().strip() == stack.pooled_url(config)
    original = first.password()
    log: list[str] = []

    rotated = rotate(stack, log.append)
    assert (rotated.rotation, rotated.active, rotated.previous) == (1, second.name, first.name)
    assert stack.active_login(config) == second
    assert stack.pooled_secret_file.read_text().strip() == stack.pooled_url(config)
    assert f"@{second.name}" not in stack.pooled_url(config) and f"://{second.name}:" in stack.pooled_url(config)
    # The role the functions used keeps its verifier and password: warm functions keep working.
    assert stored_verifiers(stack, config)[first.name] == stack.login_verifier(config, first)
    assert pooled_login(stack, config, first.name, original) == first.name
    assert pooled_login(stack, config, second.name, second.password()) == second.name

    rotate(stack, log.append)
    assert stack.active_login(config) == first
    assert first.password() != original
    assert pooled_login(stack, config, first.name, first.password()) == first.name
    with pytest.raises(psycopg.OperationalError):
        pooled_login(stack, config, first.name, original)  # refused after the following rotation
    assert stored_verifiers(stack, config) == {login.name: stack.login_verifier(config, login)
                                               for login in (first, second)}

    text = "\n".join(log)
    for number in (1, 2):
        assert all(f"rotation {number}: step {k}/4" in text for k in range(1, 5))
    for secret in (original, first.password(), second.password(), stack.owner_password(),
                   stack.login_verifier(config, first), stack.login_verifier(config, second)):
        assert secret not in text


def test_a_failed_step_leaves_the_url_working_and_a_rerun_finishes(stack: LocalStack) -> None:
    config = stack.require_config()
    first, second = stack.logins(config)
    owner_password = stack.owner_password()
    before = stored_verifiers(stack, config)
    # The migration job cannot log in: step 2 fails.
    stack.owner_password_file.write_text("not-the-owner-password\n")
    log: list[str] = []
    with pytest.raises(RotationError) as failed:
        rotate(stack, log.append)
    message = str(failed.value)
    assert "step 2/4" in message and f"still logs in as {first.name}" in message
    assert "run `lifeguard local rotate` again" in message
    assert stored_verifiers(stack, config) == before
    assert stack.active_login(config) == first
    assert pooled_login(stack, config, first.name, first.password()) == first.name
    pending_password = second.password()

    stack.owner_password_file.write_text(owner_password + "\n")
    rotated = rotate(stack, log.append)
    assert rotated.active == second.name
    assert second.password() == pending_password  # the rerun went on with the same new password
    assert "made by an unfinished run" in "\n".join(log)
    assert pooled_login(stack, config, second.name, pending_password) == second.name


def test_the_command_logs_each_step_and_no_secret(stack: LocalStack) -> None:
    config = stack.require_config()
    argv = [sys.executable, "-m", "lifeguard.cli", "local", "rotate", "--state-dir", str(stack.state_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert all(f"rotation 1: step {k}/4" in done.stderr for k in range(1, 5))
    first, second = stack.logins(config)
    for secret in (first.password(), second.password(), stack.owner_password(), stack.pooled_url(config),
                   stack.login_verifier(config, second)):
        assert secret not in done.stdout + done.stderr
    stack.down()
    stopped = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert stopped.returncode == 1
    assert "is not running: run `lifeguard local up` first" in stopped.stderr


@pytest.mark.parametrize(
    "text", ['{"rotation": 3, "switched": 1}', '{"rotation": 1}', "not json", '{"rotation": -1, "switched": -1}'])
def test_a_rotation_state_lifeguard_did_not_write_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rotation.json"
    assert load_rotation(path) == RotationState()  # none yet: the application role, never rotated
    path.write_text(text)
    with pytest.raises(RotationStateError, match="not a rotation state lifeguard wrote"):
        load_rotation(path)
    save_rotation(path, RotationState(2, 1))
    assert load_rotation(path) == RotationState(2, 1)
