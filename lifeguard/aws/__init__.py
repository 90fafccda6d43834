"""lifeguard's Pulumi components for AWS: the public API a Pulumi program (the repository's sample stack,
or yours) composes to put functions behind a transaction-mode PgBouncer.

Names are imported on first use (PEP 562), so the pipeline commands, which import the pulumi-free
modules of this package (``lifeguard.aws.outputs``, ``lifeguard.aws.keys``), never load Pulumi.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it ("module:attribute" where the public name differs; a module's own
# name exports the module: ``outputs``, the stack's output names, and ``policies``, the IAM documents).
_EXPORTS: dict[str, str] = {
    # The components, and their arguments.
    "AlarmThresholdsArgs": "lifeguard.aws.observability",
    "Database": "lifeguard.aws.database",
    "DatabaseArgs": "lifeguard.aws.database",
    "read_existing_database": "lifeguard.aws.database:read_existing",
    "MigrationJob": "lifeguard.aws.migration_job",
    "MigrationJobArgs": "lifeguard.aws.migration_job",
    "Network": "lifeguard.aws.network",
    "NetworkArgs": "lifeguard.aws.network",
    "NetworkError": "lifeguard.aws.network",
    "ArgsError": "lifeguard.aws.types",
    "AwsApiAccess": "lifeguard.aws.network",
    "Observability": "lifeguard.aws.observability",
    "ObservabilityArgs": "lifeguard.aws.observability",
    "thresholds_args": "lifeguard.aws.observability",
    "PooledClient": "lifeguard.aws.client",
    "PooledClientArgs": "lifeguard.aws.client",
    "PooledClientError": "lifeguard.aws.client",
    "pooled_client_args_from_stack": "lifeguard.aws.client",
    "Pooler": "lifeguard.aws.pooler",
    "PoolerArgs": "lifeguard.aws.pooler",
    "PoolerCertificateAuthority": "lifeguard.aws.pooler_tls",
    "PoolerCertificateAuthorityArgs": "lifeguard.aws.pooler_tls",
    "AppRoleCredentials": "lifeguard.aws.app_role",
    "AppRoleCredentialsArgs": "lifeguard.aws.app_role",
    "ConnectionSecrets": "lifeguard.aws.secrets",
    "ConnectionSecretsArgs": "lifeguard.aws.secrets",
    "CA_PATH": "lifeguard.aws.pooler_tls",
    "ca_common_name": "lifeguard.aws.pooler_tls",
    # Building what functions and images run.
    "LambdaPackage": "lifeguard.aws.lambda_package",
    "build_python_package": "lifeguard.aws.lambda_package:build",
    "build_node_package": "lifeguard.aws.node_package:build",
    "PYTHON_RUNTIME": "lifeguard.aws.lambda_package:RUNTIME",
    "NODE_RUNTIME": "lifeguard.aws.node_package:RUNTIME",
    "SHARED_PACKAGE_NAMES": "lifeguard.aws.build_context",
    "build_dir": "lifeguard.aws.build_context",
    "context_tag": "lifeguard.aws.image",
    # The sample stack's configuration (the ``lifeguard:`` keys) and its stack's contract.
    "InfraConfig": "lifeguard.aws.config",
    "InfraConfigError": "lifeguard.aws.config",
    "FunctionsConfig": "lifeguard.aws.config",
    "DatabaseConfig": "lifeguard.aws.config",
    "load_config": "lifeguard.aws.config:load",
    "check_deployed_database": "lifeguard.aws.deployed",
    "deployed_database_record": "lifeguard.aws.deployed:record",
    "check_rotation": "lifeguard.aws.rotation",
    "rotation_record": "lifeguard.aws.rotation:record",
    "secret_name_prefix": "lifeguard.aws.naming",
    "metrics_service_name": "lifeguard.aws.naming",
    "rotation_parameter_name": "lifeguard.aws.naming",
    "Account": "lifeguard.aws.policies",
    "ECS_SERVICE_PRINCIPAL": "lifeguard.aws.pooler",
    "outputs": "lifeguard.aws.outputs",
    "policies": "lifeguard.aws.policies",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from lifeguard.aws import config as _config
    from lifeguard.aws import database as _database
    from lifeguard.aws import deployed as _deployed
    from lifeguard.aws import lambda_package as _lambda_package
    from lifeguard.aws import node_package as _node_package
    from lifeguard.aws import outputs as outputs
    from lifeguard.aws import policies as policies
    from lifeguard.aws import rotation as _rotation
    from lifeguard.aws.app_role import AppRoleCredentials as AppRoleCredentials
    from lifeguard.aws.app_role import AppRoleCredentialsArgs as AppRoleCredentialsArgs
    from lifeguard.aws.build_context import SHARED_PACKAGE_NAMES as SHARED_PACKAGE_NAMES
    from lifeguard.aws.build_context import build_dir as build_dir
    from lifeguard.aws.client import PooledClient as PooledClient
    from lifeguard.aws.client import PooledClientArgs as PooledClientArgs
    from lifeguard.aws.client import PooledClientError as PooledClientError
    from lifeguard.aws.client import pooled_client_args_from_stack as pooled_client_args_from_stack
    from lifeguard.aws.config import DatabaseConfig as DatabaseConfig
    from lifeguard.aws.config import FunctionsConfig as FunctionsConfig
    from lifeguard.aws.config import InfraConfig as InfraConfig
    from lifeguard.aws.config import InfraConfigError as InfraConfigError
    from lifeguard.aws.database import Database as Database
    from lifeguard.aws.database import DatabaseArgs as DatabaseArgs
    from lifeguard.aws.deployed import check_deployed_database as check_deployed_database
    from lifeguard.aws.image import context_tag as context_tag
    from lifeguard.aws.lambda_package import LambdaPackage as LambdaPackage
    from lifeguard.aws.migration_job import MigrationJob as MigrationJob
    from lifeguard.aws.migration_job import MigrationJobArgs as MigrationJobArgs
    from lifeguard.aws.naming import metrics_service_name as metrics_service_name
    from lifeguard.aws.naming import rotation_parameter_name as rotation_parameter_name
    from lifeguard.aws.naming import secret_name_prefix as secret_name_prefix
    from lifeguard.aws.network import AwsApiAccess as AwsApiAccess
    from lifeguard.aws.network import Network as Network
    from lifeguard.aws.network import NetworkArgs as NetworkArgs
    from lifeguard.aws.network import NetworkError as NetworkError
    from lifeguard.aws.observability import AlarmThresholdsArgs as AlarmThresholdsArgs
    from lifeguard.aws.observability import Observability as Observability
    from lifeguard.aws.observability import ObservabilityArgs as ObservabilityArgs
    from lifeguard.aws.observability import thresholds_args as thresholds_args
    from lifeguard.aws.policies import Account as Account
    from lifeguard.aws.pooler import ECS_SERVICE_PRINCIPAL as ECS_SERVICE_PRINCIPAL
    from lifeguard.aws.pooler import Pooler as Pooler
    from lifeguard.aws.pooler import PoolerArgs as PoolerArgs
    from lifeguard.aws.pooler_tls import CA_PATH as CA_PATH
    from lifeguard.aws.pooler_tls import PoolerCertificateAuthority as PoolerCertificateAuthority
    from lifeguard.aws.pooler_tls import PoolerCertificateAuthorityArgs as PoolerCertificateAuthorityArgs
    from lifeguard.aws.pooler_tls import ca_common_name as ca_common_name
    from lifeguard.aws.rotation import check_rotation as check_rotation
    from lifeguard.aws.secrets import ConnectionSecrets as ConnectionSecrets
    from lifeguard.aws.secrets import ConnectionSecretsArgs as ConnectionSecretsArgs
    from lifeguard.aws.types import ArgsError as ArgsError

    # Exported under another name than the defining module's (assignments: mypy sees them as exported).
    load_config = _config.load
    read_existing_database = _database.read_existing
    deployed_database_record = _deployed.record
    rotation_record = _rotation.record
    PYTHON_RUNTIME = _lambda_package.RUNTIME
    build_python_package = _lambda_package.build
    NODE_RUNTIME = _node_package.RUNTIME
    build_node_package = _node_package.build


def __getattr__(name: str) -> Any:
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'lifeguard.aws' has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    loaded = importlib.import_module(module)
    if module == f"{__name__}.{name}":
        return loaded
    return getattr(loaded, attribute or name)


def __dir__() -> list[str]:
    return __all__
