"""docs/api.md is what `python -m lifeguard.aws.reference docs/api.md` writes from the docstrings (#24.6)."""

from __future__ import annotations

import enum
from typing import TypedDict

import pulumi

from lifeguard.aws import _EXPORTS, build_context, reference
from lifeguard.aws import outputs as names
from tests.examples.installed import REPO_ROOT

API = REPO_ROOT / "docs" / "api.md"


def test_the_committed_reference_is_what_the_generator_writes() -> None:
    assert API.read_text(encoding="utf-8") == reference.reference(), (
        "docs/api.md is stale: run `.venv/bin/python -m lifeguard.aws.reference docs/api.md` and commit it")


def test_the_reference_names_every_export() -> None:
    text = API.read_text(encoding="utf-8")
    for name in _EXPORTS:
        assert f"## `{name}" in text, name


class _Colour(enum.StrEnum):
    RED = "red"
    """The warm one."""


class _ExampleArgs(TypedDict, total=False):
    size: pulumi.Input[int]
    """How big | in units."""
    colour: _Colour


class _Example(pulumi.ComponentResource):
    """A component."""

    address: pulumi.Output[str]
    """Where it is."""

    def __init__(self, name: str, args: _ExampleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:example:Example", name, None, opts)

    def grant(self, role: str) -> None:
        """Lets ``role`` in."""


def test_the_generator_reads_fields_outputs_types_methods_and_enum_members() -> None:
    # Control: what the comparison above relies on is really read from the source.
    args = "\n".join(reference._class_section("ExampleArgs", _ExampleArgs))
    assert "| `size` | `pulumi.Input[int]` | How big \\| in units. |" in args
    assert "| `colour` | `_Colour` |  |" in args
    component = "\n".join(reference._class_section("Example", _Example))
    assert "Pulumi type `lifeguard:example:Example`." in component
    assert "| `address` | `pulumi.Output[str]` | Where it is. |" in component
    assert "### `Example.grant(self, role: str) -> None`" in component and "Lets ``role`` in." in component
    assert "| `red` | The warm one. |" in "\n".join(reference._class_section("Colour", _Colour))


def test_the_generator_documents_functions_constants_and_modules() -> None:
    function = "\n".join(reference._value_section("build_dir", "lifeguard.aws.build_context", "build_dir",
                                                  build_context.build_dir))
    assert "## `build_dir`" in function and "`lifeguard.aws.build_context.build_dir() -> Path`" in function
    assert "Where the kit writes what it builds" in function
    constant = "\n".join(reference._value_section("SHARED_PACKAGE_NAMES", "lifeguard.aws.build_context",
                                                  "SHARED_PACKAGE_NAMES", build_context.SHARED_PACKAGE_NAMES))
    assert "= `('redaction', 'database_urls')`" in constant and "the kit's one redactor" in constant
    module = "\n".join(reference._value_section("outputs", "lifeguard.aws.outputs", "outputs", names))
    assert "The module `lifeguard.aws.outputs`." in module and "The stack's output names" in module
