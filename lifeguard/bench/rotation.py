"""A password rotation under a sustained charge load, through the local pooled URL; the figures it prints.

Many function instances (the local invoker's ``churn`` mode: each instance a cold start with a new
login through PgBouncer, reading ``DATABASE_URL`` from the stack's secret, ``pooled.url``, at its cold
start and again on a refused login, as ``lambdas.db`` does with Secrets Manager) charge one organisation
credits, each call with its own idempotency key, while the password changes:

* ``two-role``: :func:`lifeguard.stack.rotation.rotate`, twice (docs/roles.md);
* ``one-step``: what a password change did before it (the only login role gets a new password; the
  secret and PgBouncer switch to it at once, as ``pulumi up`` switches the secret and rolls the pooler's
  tasks onto the new verifier; the migration job sets it in Postgres ``migrate_delay_s`` later).

Afterwards the database is read: every 200 answer must be exactly one charge row, no charge without one,
and the credits spent must equal the charges' sum. ``python -m lifeguard.bench.rotation`` runs both
procedures on a throwaway stack and prints the figures (docs/roles.md#rotating-the-password); the suite runs a smaller
``two-role`` run and asserts zero failures (tests/local/test_rotation_load.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from lambdas.contract import CHARGE_CREDITS
from lambdas.example_events import example_event
from lifeguard.load.invoker import WorkerPool, split, worker_env
from lifeguard.stack.roles import new_password
from lifeguard.stack.rotation import rotate
from lifeguard.stack.stack import LocalStack, StackConfig, StackOptions
from lifeguard.stack.system import free_port
from pgbouncer.private_file import write_private

PROCEDURES = ("two-role", "one-step")
Progress = Callable[[str], None]
CREDITS = 10**12
POOLER_PROCESSES = 2
"""Two PgBouncers on one port: a rolling restart keeps it answering, as the pooler's tasks behind the NLB."""


@dataclass
class RotationLoadResult:
    procedure: str
    instances: int
    """Function instances running at once (worker threads), each a new login per cold start."""
    duration_s: float
    invocations: int = 0
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    db_errors: dict[str, int] = field(default_factory=dict)
    secret_rereads: int = 0
    """Instances that had a login refused and read the secret again (``lambdas.db``)."""
    rotations: list[float] = field(default_factory=list)
    """Seconds each password change took, from its first step to ``DATABASE_URL`` switched (and the job run)."""
    rotation_errors: list[str] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)
    """When each change ended, in seconds from the start of the load (a change after the load proves nothing)."""
    charges: int = 0
    distinct_keys: int = 0
    charged_sum: int = 0
    credits_spent: int = 0
    old_password_refused: bool | None = None
    """After the second rotation, the first role's original password is refused through the pooler."""

    @property
    def failed_logins(self) -> int:
        """Failures where a login was refused: the client's at PgBouncer, or PgBouncer's at Postgres."""
        return sum(n for text, n in self.db_errors.items() if "authentication" in text or "login" in text)

    @property
    def doubled(self) -> int:
        """Charge rows beyond one per key, or beyond the 200 answers."""
        return (self.charges - self.distinct_keys) + max(0, self.charges - self.ok)

    @property
    def lost(self) -> int:
        """200 answers with no charge row."""
        return max(0, self.ok - self.charges)

    def lines(self) -> list[str]:
        lines = [
            f"{self.procedure}: {self.instances} instances for {self.duration_s:.0f} s, "
            f"{len(self.rotations)} password change(s) ("
            + ", ".join(f"{s:.1f} s, done at {t:.0f} s" for s, t in zip(self.rotations, self.finished_at, strict=True))
            + ")",
            f"  invocations {self.invocations}: {self.ok} ok, {self.failed} failed "
            f"({self.failed_logins} refused logins), {self.secret_rereads} secret re-reads",
            f"  charges in the database {self.charges} (distinct keys {self.distinct_keys}), "
            f"credits spent {self.credits_spent} (the charges' sum {self.charged_sum}): {self.doubled} doubled, "
            f"{self.lost} lost",
        ]
        if self.old_password_refused is not None:
            lines.append(f"  the first password after the second rotation: "
                         f"{'refused' if self.old_password_refused else 'STILL ACCEPTED'}")
        lines += [f"  error {reason}: {n}" for reason, n in sorted(self.errors.items(), key=lambda kv: -kv[1])]
        lines += [f"  database said {text}: {n}" for text, n in sorted(self.db_errors.items(), key=lambda kv: -kv[1])]
        lines += [f"  rotation failed: {text}" for text in self.rotation_errors]
        return lines


def one_step_change(stack: LocalStack, config: StackConfig, progress: Progress, migrate_delay_s: float) -> None:
    """The password change before #28 (kept only to measure it): one role, its new verifier in PgBouncer first.

    ``pulumi up`` put the new password in the secret and rolled the pooler's tasks onto the new verifier:
    new tasks, empty pools. Here the PgBouncer processes restart one after the other (the stack runs
    several on one port, so the port keeps answering, as behind the NLB).
    """
    login = stack.active_login(config)
    write_private(login.password_file, new_password() + "\n", atomic=True)
    progress(f"one-step: a new password for {login.name}; DATABASE_URL and PgBouncer switch to it at once")
    stack.write_pooled_secret(config)
    stack.restart_poolers(config, rolling=True)
    time.sleep(migrate_delay_s)
    progress(f"one-step: the migration job sets the verifier in Postgres, {migrate_delay_s:.0f} s later")
    run = stack.migrate(config)
    if run.returncode != 0:
        raise RuntimeError(f"the migration job failed (exit code {run.returncode})")


def run_rotation_load(
    stack: LocalStack,
    *,
    procedure: str,
    instances: int,
    duration_s: float,
    changes: int,
    workers: int = 4,
    invocations_per_instance: int = 1,
    migrate_delay_s: float = 5.0,
    progress: Progress = lambda _: None,
) -> RotationLoadResult:
    """Charge under load for ``duration_s`` while ``changes`` password changes run, evenly spread."""
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {', '.join(PROCEDURES)}")
    config = stack.require_config()
    shares = split(instances, workers)
    # One organisation per worker: charges of one organisation queue on its row lock, and one row for
    # hundreds of instances would measure that queue, not the logins.
    with psycopg.connect(stack.direct_url(config), autocommit=True) as conn:
        org_ids = [int(conn.execute("INSERT INTO orgs (name, credits) VALUES (%s, %s) RETURNING id",
                                    (f"rotation-load-{uuid.uuid4()}", CREDITS)).fetchone()[0])  # type: ignore[index]
                   for _ in shares]
    run_id = uuid.uuid4().hex[:8]
    jobs: list[dict[str, Any]] = [
        {"mode": "churn", "function": CHARGE_CREDITS.name, "threads": threads, "duration_s": duration_s,
         "event": example_event(CHARGE_CREDITS.name, "ok", org_id=org_id, amount=1),
         "secret_file": str(stack.pooled_secret_file), "key_prefix": f"rotation-{run_id}-{index}",
         "invocations": invocations_per_instance}
        for index, (threads, org_id) in enumerate(zip(shares, org_ids, strict=True))
    ]
    result = RotationLoadResult(procedure, instances, duration_s)
    first_password = stack.logins(config)[0].password()

    def changer() -> None:
        gap = duration_s / (changes + 1)
        for number in range(1, changes + 1):
            time.sleep(max(0.0, go + number * gap - time.perf_counter()))  # evenly spread over the load
            started = time.perf_counter()
            try:
                if procedure == "two-role":
                    rotate(stack, progress)
                else:
                    one_step_change(stack, config, progress, migrate_delay_s)
            except Exception as exc:  # a failed change is a figure of the run, reported with it
                result.rotation_errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            result.rotations.append(time.perf_counter() - started)
            result.finished_at.append(time.perf_counter() - go)

    env = worker_env(None, CHARGE_CREDITS.name, client=stack.client_env(config))
    go = time.perf_counter()
    with WorkerPool(jobs, env) as pool:
        thread = threading.Thread(target=changer, daemon=True)
        go = time.perf_counter()
        pool.send({"type": "go"})
        thread.start()
        reports = pool.collect("churn", timeout=duration_s + 300)
        thread.join()
    errors: Counter[str] = Counter()
    db_errors: Counter[str] = Counter()
    for report in reports:
        result.invocations += int(report["done"])
        result.ok += int(report["ok"])
        result.failed += int(report["failed"])
        result.secret_rereads += int(report.get("secret_rereads", 0))
        errors.update(report["errors"])
        db_errors.update(report["db_errors"])
    result.errors, result.db_errors = dict(errors), dict(db_errors)
    with psycopg.connect(stack.direct_url(config), autocommit=True) as conn:
        counted = conn.execute("SELECT count(*), count(DISTINCT (org_id, idempotency_key)), coalesce(sum(amount), 0)"
                               " FROM charges WHERE org_id = ANY(%s)", (org_ids,)).fetchone()
        credits = conn.execute("SELECT sum(credits) FROM orgs WHERE id = ANY(%s)", (org_ids,)).fetchone()
    assert counted is not None and credits is not None
    result.charges, result.distinct_keys, result.charged_sum = (int(counted[0]), int(counted[1]), int(counted[2]))
    result.credits_spent = CREDITS * len(org_ids) - int(credits[0])
    if procedure == "two-role" and changes >= 2:
        result.old_password_refused = _refused(stack, config, first_password)
    return result


def _refused(stack: LocalStack, config: StackConfig, password: str) -> bool:
    """Whether PgBouncer refuses the first login role with ``password``."""
    first = stack.logins(config)[0]
    try:
        with psycopg.connect(host="127.0.0.1", port=config.pooler_port, user=first.name, password=password,
                             dbname=config.dbname, sslmode="verify-full", sslrootcert=str(stack.pooler_ca_file),
                             connect_timeout=10):
            return False
    except psycopg.OperationalError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lifeguard.bench.rotation",
        description="Charge credits through the pooler from many instances while the password changes: the "
        "two-role rotation (lifeguard local rotate, twice) and the one-step change it replaced. Prints the "
        "figures; makes and deletes its own local stack.")
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per procedure")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--migrate-delay", type=float, default=5.0,
                        help="one-step: seconds between the pooler's switch and the migration job")
    parser.add_argument("--invocations", type=int, default=1,
                        help="invocations per instance before it is recycled (1: every call a cold start, a new login)")
    parser.add_argument("--only", choices=PROCEDURES)
    args = parser.parse_args(argv)
    # Under /var/tmp: the postgres user must reach the state directory (as root the services run as it).
    root = Path(tempfile.mkdtemp(prefix="lifeguard-rotation-", dir="/var/tmp"))
    root.chmod(0o755)
    stack = LocalStack(root / "stack")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        stack.up(StackOptions(pg_port=free_port(), pooler_port=free_port(), durable=False,
                              pooler_processes=POOLER_PROCESSES))
        for procedure in [args.only] if args.only else PROCEDURES:
            result = run_rotation_load(
                stack, procedure=procedure, instances=args.instances, duration_s=args.duration,
                changes=2 if procedure == "two-role" else 1, workers=args.workers,
                migrate_delay_s=args.migrate_delay, invocations_per_instance=args.invocations,
                progress=lambda line: print(f"  {line}", flush=True))
            print("\n".join(result.lines()), flush=True)
    finally:
        stack.down(purge=True)
        root.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
