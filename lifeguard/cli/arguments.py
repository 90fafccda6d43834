"""Argument types the commands share (argparse ``type=`` functions; the message says what to change)."""

from __future__ import annotations

import argparse
import shlex
from typing import TextIO


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (``--timeout``, ``--poll-interval``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def add_wait_arguments(
    parser: argparse.ArgumentParser, *, timeout: float, timeout_help: str, poll_interval: float, poll_help: str
) -> None:
    """``--timeout`` and ``--poll-interval``, in seconds, for a command that waits on AWS; helps name the defaults."""
    parser.add_argument("--timeout", type=positive_seconds, default=timeout, metavar="SECONDS",
                        help=f"{timeout_help} (default: %(default)g)")
    parser.add_argument("--poll-interval", type=positive_seconds, default=poll_interval, metavar="SECONDS",
                        help=f"{poll_help} (default: %(default)g)")


def positive_integer(text: str) -> int:
    """A whole number of at least 1 (``--org-id``, ``--instances``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


STDIN = "-"
"""Given instead of a URL: read it from standard input, so a password never sits on the command line."""
SECRET_URL_HELP = (
    "A password on the command line shows in `ps` and the shell's history: prefer the environment "
    f"variable, or give {STDIN} and pipe the URL on stdin (one per line, in the order given)"
)


def url_from_stdin(value: str | None, option: str, stdin: TextIO) -> str | None:
    """``value``, or for ``-`` the next line of ``stdin``; ValueError (saying what to give) when that is empty."""
    if value != STDIN:
        return value
    line = stdin.readline().strip()
    if not line:
        raise ValueError(f"{option} is {STDIN}, but standard input holds no URL (pipe one line per {STDIN})")
    return line


def command_words(text: str) -> list[str]:
    """An argparse type: a command line given as one string (``--command 'alembic upgrade head'``), split
    as a POSIX shell would split it, without running a shell."""
    try:
        command = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into words: {exc}") from None
    if not command:
        raise argparse.ArgumentTypeError("an empty command")
    return command
