"""Argument types shared by the pipeline commands."""

from __future__ import annotations

import argparse


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (``--timeout``, ``--poll-interval``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value
