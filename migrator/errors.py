"""Exit codes and the errors behind them.

Every error the migrator raises on purpose is a :class:`MigratorError` whose message says what
happened and what to change; none carries a URL or a password.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """``python -m migrator`` exit codes: 0 only when the run did what it was asked."""

    OK = 0
    ERROR = 1
    """Anything unforeseen (a bug, or a failure the migrator has no better word for)."""
    CONFIG = 2
    """Bad input: no direct URL, malformed migration files, bad flags."""
    REFUSED = 3
    """The URL goes through a pooler or proxy, not straight to Postgres."""
    LOCK_TIMEOUT = 4
    """Another run held the migration lock for longer than ``--lock-timeout``."""
    MIGRATION_FAILED = 5
    """A migration failed; its transaction was rolled back (see no-transaction files)."""
    CHECKSUM_DRIFT = 6
    """An applied migration file was edited afterwards."""
    UNAVAILABLE = 7
    """The database or its secret could not be reached."""


class MigratorError(Exception):
    exit_code: ExitCode = ExitCode.ERROR


class MigratorConfigError(MigratorError):
    exit_code = ExitCode.CONFIG


class MigrationFileError(MigratorConfigError):
    """A migration file or directory that cannot be used as it is (name, encoding, content)."""


class PoolerRefused(MigratorError):
    exit_code = ExitCode.REFUSED


class LockTimeout(MigratorError):
    exit_code = ExitCode.LOCK_TIMEOUT


class MigrationFailed(MigratorError):
    exit_code = ExitCode.MIGRATION_FAILED


class ChecksumDrift(MigratorError):
    exit_code = ExitCode.CHECKSUM_DRIFT

    def __init__(self, message: str, filenames: tuple[str, ...]) -> None:
        super().__init__(message)
        self.filenames = filenames


class Unavailable(MigratorError):
    exit_code = ExitCode.UNAVAILABLE
