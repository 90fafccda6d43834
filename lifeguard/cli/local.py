"""``lifeguard local up|migrate|down|status|env|top``: the local stack (Postgres + PgBouncer + migrations).

Only ``env`` prints the URLs (that is its job); every other command names hosts and ports at most.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from lifeguard.cli.arguments import command_words
from lifeguard.deploy.workflow_commands import neutralise
from lifeguard.stack.stack import (
    STACK_ERRORS,
    STATE_DIR_ENV,
    LocalStack,
    StackOptions,
    StackStatus,
    resolve_state_dir,
)
from migrator.contract import wrapped_command


def add_state_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", metavar="DIR",
        help=f"where the stack keeps its state (default: ${STATE_DIR_ENV}, else .lifeguard/ here)",
    )


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """Options that shape a new stack (an existing one keeps what it was created with)."""
    parser.add_argument("--pg-port", type=int, metavar="PORT", help="Postgres port (default 55432)")
    parser.add_argument("--pooler-port", type=int, metavar="PORT", help="PgBouncer port (default 56432)")
    parser.add_argument(
        "--max-connections", type=int, metavar="N",
        help="Postgres max_connections, as set in the RDS parameter group (default 100)",
    )
    parser.add_argument(
        "--pooler-processes", type=int, metavar="N",
        help="PgBouncer processes sharing the port with so_reuseport, one core each (default 1)",
    )
    parser.add_argument(
        "--max-client-conn", type=int, metavar="N", help="PgBouncer max_client_conn per process (default 10000)"
    )
    parser.add_argument(
        "--pgbouncer", metavar="PATH",
        help="the PgBouncer binary to run (default: the shipped release, installed by scripts/install-pgbouncer.sh)",
    )
    parser.add_argument(
        "--scram-iterations", type=int, metavar="N",
        help="SCRAM iteration count of the application role's verifier, for its generated password only "
        "(default 16; docs/roles.md); fixed when the stack is made",
    )


def stack_options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        pg_port=args.pg_port,
        pooler_port=args.pooler_port,
        max_connections=args.max_connections,
        pooler_processes=args.pooler_processes,
        max_client_conn=args.max_client_conn,
        pgbouncer=str(Path(args.pgbouncer).absolute()) if args.pgbouncer else None,
        scram_iterations=args.scram_iterations,
    )


def configure(local: argparse.ArgumentParser) -> None:
    local.description = "A local Postgres standing in for RDS and a PgBouncer on the image's own rendered config."
    commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="start Postgres and PgBouncer and apply the migrations (idempotent)",
        description=(
            "Start the local stack, creating it on first use, and run the migration job with only "
            "DATABASE_URL_UNPOOLED in its environment. Running it again changes nothing."
        ),
    )
    add_state_dir_argument(up)
    add_stack_options(up)
    up.add_argument("--no-migrate", action="store_true", help="do not run the migration job")
    up.add_argument(
        "--migrate-command", metavar="'CMD ARGS'", type=command_words,
        help="run your own migration tool instead of the sample migrations, through the migration wrapper "
        "(python -m migrator run -- CMD ARGS: guard, lock, application role), e.g. 'alembic upgrade head'",
    )
    up.add_argument(
        "--images", action="store_true",
        help="run PgBouncer and the migration job from the pooler and migrator images, built from their "
        "Dockerfiles on a private Docker engine in the state directory (needs root)",
    )
    up.set_defaults(func=run_up)

    down = commands.add_parser("down", help="stop PgBouncer and Postgres (nothing keeps running)")
    add_state_dir_argument(down)
    down.add_argument("--purge", action="store_true", help="also delete the state directory (data, passwords)")
    down.set_defaults(func=run_down)

    migrate = commands.add_parser(
        "migrate", help="run the migration job on the running stack: the sample migrations, or -- CMD ARGS",
        description="Run the migration job against the local Postgres, as `up` does: with no command, the "
        "sample migrations (python -m migrator); with -- CMD ARGS, your tool through the migration wrapper "
        "(python -m migrator run -- CMD ARGS), which hands it the direct URL as DATABASE_URL and "
        "DATABASE_URL_UNPOOLED. Exits with the job's exit code.",
    )
    add_state_dir_argument(migrate)
    migrate.add_argument("command", nargs=argparse.REMAINDER, help="your migration command, after '--'")
    migrate.set_defaults(func=run_migrate)

    status = commands.add_parser("status", help="what is running; exit 0 when the whole stack is up, 3 otherwise")
    add_state_dir_argument(status)
    status.set_defaults(func=run_status)

    env = commands.add_parser(
        "env", help="print DATABASE_URL, DATABASE_URL_UNPOOLED and what clients need besides, as export lines",
        description="Print shell-quoted `export DATABASE_URL=...` and `export DATABASE_URL_UNPOOLED=...` lines, "
        "with what the stack tells functions besides (LIFEGUARD_POOLER_PREPARED_STATEMENTS, NODE_EXTRA_CA_CERTS): "
        'eval "$(lifeguard local env)" sets them for the programs the shell then starts.',
    )
    add_state_dir_argument(env)
    env.set_defaults(func=run_env)

    rotate = commands.add_parser(
        "rotate", help="a new password for the functions' database login, with no failed login on the way",
        description="Rotate the application's password: the login role DATABASE_URL does not use gets a new "
        "password, the migration job sets its verifier in Postgres, PgBouncer reloads both roles' verifiers, "
        "then DATABASE_URL switches to it. The other role keeps working until the next rotation. Each step is "
        "logged; a failed step leaves DATABASE_URL working and says what to rerun (docs/roles.md).",
    )
    add_state_dir_argument(rotate)
    rotate.set_defaults(func=run_rotate)

    _add_top(commands)


def _add_top(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lifeguard.stack.top import add_top_command

    parser = add_top_command(commands)
    add_state_dir_argument(parser)
    # The stack (and so the console to read) is known only once --state-dir is parsed.
    parser.set_defaults(func=_run_top)


def _run_top(args: argparse.Namespace) -> int:
    from lifeguard.stack.top import run_top, stack_sources

    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        return run_top(args, lambda: stack_sources(stack))
    except STACK_ERRORS as exc:
        return _fail(str(exc))


def _say(message: str) -> None:
    # Progress relays the migration job's output, which carries what the database wrote.
    print(neutralise(message), file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    print(neutralise(f"lifeguard local: error: {message}"), file=sys.stderr)
    return 1


def _job_command(command: list[str] | None) -> list[str] | None:
    """The migration job's argv: the sample runner (None), or ``command`` behind the wrapper."""
    return None if not command else wrapped_command(command, sys.executable)


def run_up(args: argparse.Namespace) -> int:
    if args.migrate_command and (args.no_migrate or args.images):
        return _fail("--migrate-command runs your tool on this machine: leave out "
                     + ("--no-migrate" if args.no_migrate else "--images"))
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        config = stack.up(stack_options(args), migrate=not args.no_migrate, progress=_say, images=args.images,
                          migrate_command=_job_command(args.migrate_command))
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    _say(
        f"local stack up in {stack.state_dir}:\n"
        f"  Postgres  127.0.0.1:{config.pg_port}  max_connections {config.max_connections}"
        f" (DATABASE_URL_UNPOOLED, for migrations)\n"
        f"  PgBouncer 127.0.0.1:{config.pooler_port}  transaction mode, {config.pooler_processes} process(es)"
        f" x default_pool_size {config.pool_size} (DATABASE_URL, for functions)\n"
        f"`lifeguard local env` prints the two URLs; `lifeguard local down` stops everything."
    )
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        status = stack.status()
        if not status.up:
            return _fail(f"the local stack in {stack.state_dir} is not running: run `lifeguard local up` first")
        run = stack.migrate(status.config, command=_job_command(command))
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    for line in run.output.splitlines():
        _say(f"  migrator: {line}")
    if run.returncode != 0:
        _say(f"lifeguard local: the migration job failed (exit code {run.returncode}); its output is above")
    return run.returncode


def run_rotate(args: argparse.Namespace) -> int:
    from lifeguard.stack.rotation import rotate

    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        rotate(stack, progress=_say)
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    return 0


def run_down(args: argparse.Namespace) -> int:
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        stack.down(purge=args.purge, progress=_say)
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    _say("local stack stopped" + (" and deleted" if args.purge else ""))
    return 0


def format_status(status: StackStatus) -> str:
    config = status.config
    if config is None:
        return f"no local stack in {status.state_dir} (run `lifeguard local up`)"
    postgres = "running" if status.postgres_running else "stopped"
    backends = f", {status.backends}/{config.max_connections} backends" if status.backends is not None else ""
    poolers = f"{status.poolers_running}/{config.pooler_processes} running"
    return "\n".join([
        f"state     {status.state_dir}",
        f"Postgres  127.0.0.1:{config.pg_port}  {postgres} (max_connections {config.max_connections}{backends})",
        f"PgBouncer 127.0.0.1:{config.pooler_port}  {poolers} (default_pool_size {config.pool_size} each,"
        f" max_client_conn {config.max_client_conn})",
        f"stack     {'up' if status.up else 'down' if not status.anything_running else 'partly up'}",
    ])


def run_status(args: argparse.Namespace) -> int:
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        status = stack.status()
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    print(format_status(status))
    return 0 if status.up else 3


def run_env(args: argparse.Namespace) -> int:
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        status = stack.status()
        if not status.up:
            return _fail(f"the local stack in {stack.state_dir} is not running: run `lifeguard local up` first")
        pooled, direct = stack.pooled_url(status.config), stack.direct_url(status.config)
        client = stack.client_env(status.config)
    except STACK_ERRORS as exc:
        return _fail(str(exc))
    # Printing the URLs is this command's whole purpose; quoted so `eval` and `source` keep `&`, and
    # exported: a bare assignment stays in the shell and never reaches the programs it starts.
    print(f"export {POOLED_URL_ENV}={shlex.quote(pooled)}")
    for name, value in client.items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"export {DIRECT_URL_ENV}={shlex.quote(direct)}")
    return 0
