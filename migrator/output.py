"""The migrator's log lines: ``migrator: ...`` on stderr, every line through the redactor first."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from redaction import Redactor

log = logging.getLogger("migrator")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"migrator: {level}{record.getMessage()}"


@contextmanager
def logging_to_stderr(redactor: Redactor) -> Iterator[None]:
    """Route the ``migrator`` logger to stderr, masked by ``redactor``, for the ``with`` block."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(redactor)
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
