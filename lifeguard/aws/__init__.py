"""lifeguard's Pulumi components for AWS: the public API a Pulumi program (the repository's sample stack,
or yours) composes to put functions behind a transaction-mode PgBouncer.

Names are imported on first use (PEP 562), so the pipeline commands, which import the pulumi-free
modules of this package (``lifeguard.aws.outputs``, ``lifeguard.aws.keys``), never load Pulumi.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "AlarmThresholdsArgs": "lifeguard.aws.observability",
    "Database": "lifeguard.aws.database",
    "DatabaseArgs": "lifeguard.aws.database",
    "MigrationJob": "lifeguard.aws.migration_job",
    "MigrationJobArgs": "lifeguard.aws.migration_job",
    "Network": "lifeguard.aws.network",
    "NetworkArgs": "lifeguard.aws.network",
    "Observability": "lifeguard.aws.observability",
    "ObservabilityArgs": "lifeguard.aws.observability",
    "Pooler": "lifeguard.aws.pooler",
    "PoolerArgs": "lifeguard.aws.pooler",
    "PoolerCertificateAuthority": "lifeguard.aws.pooler_tls",
    "PoolerCertificateAuthorityArgs": "lifeguard.aws.pooler_tls",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from lifeguard.aws.database import Database as Database
    from lifeguard.aws.database import DatabaseArgs as DatabaseArgs
    from lifeguard.aws.migration_job import MigrationJob as MigrationJob
    from lifeguard.aws.migration_job import MigrationJobArgs as MigrationJobArgs
    from lifeguard.aws.network import Network as Network
    from lifeguard.aws.network import NetworkArgs as NetworkArgs
    from lifeguard.aws.observability import AlarmThresholdsArgs as AlarmThresholdsArgs
    from lifeguard.aws.observability import Observability as Observability
    from lifeguard.aws.observability import ObservabilityArgs as ObservabilityArgs
    from lifeguard.aws.pooler import Pooler as Pooler
    from lifeguard.aws.pooler import PoolerArgs as PoolerArgs
    from lifeguard.aws.pooler_tls import PoolerCertificateAuthority as PoolerCertificateAuthority
    from lifeguard.aws.pooler_tls import PoolerCertificateAuthorityArgs as PoolerCertificateAuthorityArgs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lifeguard.aws' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
