"""``lifeguard``: the kit's command line (local stack, demo, benchmarks, pipeline commands).

argparse rather than click: ``lifeguard migrate``, ``smoke`` and ``verify-rollout`` run from the base
install, which is boto3 alone (tests/test_dependencies.py), and the few hand-written argument types
(:mod:`lifeguard.cli.arguments`) would stay with click too: its ``FloatRange`` lets infinity through.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple

# Adds a command's arguments to its subparser, with ``set_defaults(func=...)`` where
# ``func(args) -> int`` is the exit code.
Configure = Callable[[argparse.ArgumentParser], None]


class Command(NamedTuple):
    # Imports the command's module and returns its ``configure``: called only when the command runs
    # (or its --help is asked for), so `lifeguard migrate` and `lifeguard smoke` work from the base
    # install, which has nothing of the local stack (psycopg, cryptography, matplotlib).
    load: Callable[[], Configure]
    help: str
    # The optional-dependencies extra its imports come from (None: the base install has them).
    extra: str | None


def _local() -> Configure:
    from lifeguard.cli.local import configure
    return configure


def _demo() -> Configure:
    from lifeguard.cli.demo import configure
    return configure


def _bench() -> Configure:
    from lifeguard.cli.bench import configure
    return configure


def _migrate() -> Configure:
    from lifeguard.cli.migrate import configure
    return configure


def _smoke() -> Configure:
    from lifeguard.cli.smoke import configure
    return configure


def _doctor() -> Configure:
    from lifeguard.cli.doctor import configure
    return configure


def _verify_rollout() -> Configure:
    from lifeguard.cli.verify_rollout import configure
    return configure


COMMANDS: dict[str, Command] = {
    "local": Command(_local, "run the stack on this machine: Postgres (as RDS), PgBouncer, migrations", "local"),
    "demo": Command(_demo, "replay a launch-day spike straight at Postgres, then through PgBouncer", "local"),
    "bench": Command(_bench, "measure pooled against direct: spike capacity, connection churn, warm overhead",
                     "local"),
    "migrate": Command(_migrate, "run the stack's migration task on ECS and wait for it", None),
    "smoke": Command(_smoke, "invoke the deployed sample functions (or --function, yours) and check the answers", None),
    "doctor": Command(
        _doctor, "check a Postgres URL (and its direct pair): pooling, prepared statements, headroom, TLS", "local",
    ),
    "verify-rollout": Command(
        _verify_rollout, "check the pooler's ECS service runs the task definition the stack deployed", None,
    ),
}


def build_parser(load: Collection[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The parser, with the arguments of the commands in ``load``; the others are listed by name only."""
    parser = argparse.ArgumentParser(
        prog="lifeguard",
        description="Serverless functions on Postgres through a transaction-mode PgBouncer.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help)
        if name not in load:
            continue
        try:
            configure = command.load()
        except ModuleNotFoundError as exc:
            parser.error(f"`lifeguard {name}` cannot start: {exc}. Install what it needs with "
                         f"`scripts/bootstrap.sh {command.extra or 'pipeline'}`")
        configure(subparser)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (``lifeguard`` has none of its own)."""
    return next((word for word in argv if not word.startswith("-")), None)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so its ``finally`` blocks run as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # As the program (not when a test calls main): `timeout`, systemd or a CI runner's cancel send
        # SIGTERM, whose default would end the process at once and leave the local stack's Postgres and
        # PgBouncer running; as an exception, the same clean-up as Ctrl-C runs first.
        signal.signal(signal.SIGTERM, _terminate)
    words = sys.argv[1:] if argv is None else list(argv)
    command = chosen_command(words)
    args = build_parser(load=() if command is None else (command,)).parse_args(words)
    try:
        return int(args.func(args))
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
