"""``lifeguard``: the kit's command line (local stack, demo, benchmarks, pipeline commands)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from typing import NamedTuple


class Command(NamedTuple):
    module: str
    help: str
    # The optional-dependencies extra its imports come from (None: the base install has them).
    extra: str | None


# The module is imported only when its command runs (or its --help is asked for): `lifeguard migrate`
# and `lifeguard smoke` work from the base install, which has nothing of the local stack (psycopg,
# cryptography, matplotlib). Each module defines ``configure(parser)``, adding its arguments with
# ``set_defaults(func=...)`` where ``func(args) -> int`` is the exit code.
COMMANDS: dict[str, Command] = {
    "local": Command("lifeguard.cli.local",
                     "run the stack on this machine: Postgres (as RDS), PgBouncer, migrations", "local"),
    "demo": Command("lifeguard.cli.demo",
                    "replay a launch-day spike straight at Postgres, then through PgBouncer", "local"),
    "bench": Command("lifeguard.cli.bench",
                     "measure pooled against direct: spike capacity, connection churn, warm overhead", "local"),
    "migrate": Command("lifeguard.cli.migrate", "run the stack's migration task on ECS and wait for it", None),
    "smoke": Command("lifeguard.cli.smoke", "invoke the deployed sample functions and check their answers", None),
    "doctor": Command(
        "lifeguard.cli.doctor",
        "check a Postgres URL (and its direct pair): pooling, prepared statements, headroom, TLS",
        "local",
    ),
    "verify-rollout": Command("lifeguard.cli.verify_rollout",
                              "check the pooler's ECS service runs the task definition the stack deployed", None),
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
            module = importlib.import_module(command.module)
        except ModuleNotFoundError as exc:
            parser.error(f"`lifeguard {name}` cannot start: {exc}. Install what it needs with "
                         f"`scripts/bootstrap.sh {command.extra or 'pipeline'}`")
        module.configure(subparser)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (``lifeguard`` has none of its own)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = chosen_command(words)
    args = build_parser(load=() if command is None else (command,)).parse_args(words)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
