"""lifeguard's components as a Pulumi component provider, so TypeScript, Go (any Pulumi language) use them.

``pulumi package add <checkout>`` reads ``PulumiPlugin.yaml`` at the repository's root, runs its
``__main__.py`` (this module's :func:`main`) in the repository's virtualenv, asks the provider for its
schema (``GetSchema``) and generates an SDK from it. The schema is the SDK analyzer's reading of the
public components' type annotations (``pulumi.provider.experimental.analyzer``); it is committed
(``schema.json`` here) and a test fails when the public API and it differ:

    .venv/bin/python -m lifeguard.aws.provider --schema > lifeguard/aws/provider/schema.json

rewrites it. Any other arguments start the provider (the engine's address first), as the CLI does.
"""

import importlib.metadata
import json
import sys
from collections.abc import Sequence
from inspect import isclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.provider.experimental import component_provider_host
from pulumi.provider.experimental.component import ComponentProvider

import lifeguard.aws
from lifeguard.aws.type_token import PACKAGE, host_components

SCHEMA_PATH = Path(__file__).with_name("schema.json")
DISTRIBUTION = "lifeguard"
REGENERATE = ".venv/bin/python -m lifeguard.aws.provider --schema > lifeguard/aws/provider/schema.json"
# No namespace: the schema's ``namespace`` names a publisher (as ``pulumi`` for @pulumi/aws), and this
# package has none of record; `pulumi package add` names the local SDK from ``name``.
NAMESPACE: str | None = None


def version() -> str:
    """The installed distribution's version: the schema's and the plugin's (semver, as the schema requires)."""
    return importlib.metadata.version(DISTRIBUTION)


def components() -> list[type[pulumi.ComponentResource]]:
    """Every component ``lifeguard.aws`` exports, in ``__all__``'s order: the provider hosts each one."""
    exported = (getattr(lifeguard.aws, name) for name in lifeguard.aws.__all__)
    return [item for item in exported if isclass(item) and issubclass(item, pulumi.ComponentResource)]


def provider() -> ComponentProvider:
    """The provider ``component_provider_host`` runs, built the same way: its schema is what it serves."""
    return ComponentProvider(components(), PACKAGE, NAMESPACE, version())


def schema() -> dict[str, Any]:
    """The schema the provider serves on ``GetSchema``, as JSON data."""
    served = provider().schema
    assert served is not None
    data: dict[str, Any] = json.loads(served)
    return data


def schema_text() -> str:
    """:func:`schema` as committed: sorted keys, two-space indent, a final newline (stable diffs)."""
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str]) -> None:
    if list(argv) == ["--schema"]:
        sys.stdout.write(schema_text())
        return
    # From here on this process is the provider: hosted components register lifeguard:index:<Class>.
    host_components()
    component_provider_host(components(), name=PACKAGE, namespace=NAMESPACE, version=version())
