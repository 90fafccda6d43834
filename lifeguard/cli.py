"""``lifeguard``: the kit's command line (local stack, demo, benchmarks, pipeline commands)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers)``, adding its commands with ``set_defaults(func=...)``
# where ``func(args) -> int`` is the exit code.
COMMAND_MODULES = (
    "lifeguard.commands.local",
    "lifeguard.commands.demo",
    "lifeguard.commands.bench",
    "lifeguard.commands.migrate",
    "lifeguard.commands.smoke",
    "lifeguard.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifeguard",
        description="Serverless functions on Postgres through a transaction-mode PgBouncer.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
