"""The migrator's log lines: ``migrator: ...`` on stderr, every line through the redactor first."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from migrator.errors import ExitCode, MigratorError
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


def exit_code_of(step: Callable[[], int]) -> int:
    """``step``'s exit code; a :class:`MigratorError` logged and ended in its own code, anything else
    logged with its traceback (masked like every line) and ended in ``ERROR``."""
    try:
        return step()
    except MigratorError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except Exception:
        log.error("unexpected error:\n%s", traceback.format_exc().rstrip())
        return int(ExitCode.ERROR)
