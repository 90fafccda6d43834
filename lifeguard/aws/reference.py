"""The public API's reference, docs/api.md, generated from the docstrings.

``python -m lifeguard.aws.reference docs/api.md`` rewrites it.

Generated rather than written so it cannot drift: every name ``lifeguard.aws`` exports, its docstring, each
``…Args`` field with its type and the string literal documenting it (the same literals the Pulumi analyzer
turns into schema descriptions), each component's outputs and Pulumi type, and its public methods. A test
(tests/examples/test_reference.py) fails when the committed file differs from what this writes.
Standard library only, besides importing the components themselves (the ``infra`` extra).
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

HEADER = """# lifeguard.aws: API reference

<!-- Generated from the docstrings by `python -m lifeguard.aws.reference docs/api.md`; do not edit by hand.
tests/examples/test_reference.py fails when this file differs from what the generator writes. -->
"""


def _documented_names(cls: type) -> list[tuple[str, str, str]]:
    """(name, annotation, docstring) of each annotated name in the class body, in source order.

    The docstring is the string literal right under the annotation, as the Pulumi analyzer reads it.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return []
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    found: list[tuple[str, str, str]] = []
    for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        doc = ""
        if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            doc = inspect.cleandoc(following.value.value)
        found.append((statement.target.id, ast.unparse(statement.annotation), doc))
    return found


def _pulumi_type(cls: type) -> str | None:
    """The type token a component passes to ``super().__init__`` (its URNs' type), when written literally."""
    init = cls.__dict__.get("__init__")
    if init is None:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError):
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
                and isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "id", "") == "super"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            return node.args[0].value
    return None


def _cell(text: str) -> str:
    """``text`` fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _class_section(name: str, cls: type) -> list[str]:
    lines = [f"## `{name}`", "", f"`{cls.__module__}.{cls.__qualname__}`", ""]
    pulumi_type = _pulumi_type(cls)
    if pulumi_type:
        lines += [f"Pulumi type `{pulumi_type}`.", ""]
    doc = inspect.getdoc(cls)
    # Its own docstring: not one inherited, nor the signature @dataclass writes when there is none.
    if doc and cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        lines += [doc, ""]
    if issubclass(cls, enum.Enum):
        lines += ["| value | meaning |", "|---|---|"]
        lines += [f"| `{member.value}` | {_cell(_enum_doc(cls, member.name))} |" for member in cls]
        return [*lines, ""]
    fields = _documented_names(cls)
    if fields:
        component = any(base.__name__ == "ComponentResource" for base in cls.__mro__)
        lines += ["| output | type | description |" if component else "| field | type | description |",
                  "|---|---|---|"]
        lines += [f"| `{field}` | `{_cell(annotation)}` | {_cell(doc)} |" for field, annotation, doc in fields
                  if not field.startswith("_")]
        lines.append("")
    for method_name, method in sorted(vars(cls).items()):
        wrapped = isinstance(method, (staticmethod, classmethod))
        if method_name.startswith("_") or not (callable(method) or wrapped):
            continue
        function = method.__func__ if wrapped else method
        lines += [f"### `{name}.{method_name}{_signature(function)}`", ""]
        method_doc = inspect.getdoc(function)
        if method_doc:
            lines += [method_doc, ""]
    return lines


def _enum_doc(cls: type[enum.Enum], member: str) -> str:
    for field, _annotation, doc in _documented_names(cls):
        if field == member:
            return doc
    source = textwrap.dedent(inspect.getsource(cls))
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
        if (isinstance(statement, ast.Assign) and any(getattr(t, "id", "") == member for t in statement.targets)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
            return inspect.cleandoc(str(following.value.value))
    return ""


def _signature(function: Any) -> str:
    """The signature as written in the source (annotations as the author spelled them, unevaluated)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError):
        return "(...)"
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"({ast.unparse(node.args)}){returns}"


def _value_section(name: str, module_name: str, attribute: str, value: Any) -> list[str]:
    """A function, a constant or a module the package exports (``attribute``: its name where defined)."""
    if inspect.ismodule(value):
        lines = [f"## `{name}`", "", f"The module `{value.__name__}`.", ""]
        doc = inspect.getdoc(value)
    elif callable(value):
        # The heading is the bare name, so the index's links (#name) find it.
        lines = [f"## `{name}`", "", f"`{module_name}.{attribute}{_signature(value)}`", ""]
        doc = inspect.getdoc(value)
    else:
        lines = [f"## `{name}`", "", f"`{module_name}.{attribute}` = `{value!r}`", ""]
        doc = _constant_doc(module_name, attribute)
    if doc:
        lines += [doc, ""]
    return lines


def _constant_doc(module_name: str, name: str) -> str:
    """The string literal under a module-level constant, as for the fields."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    for statement, following in zip(tree.body, [*tree.body[1:], None], strict=True):
        targets = (statement.targets if isinstance(statement, ast.Assign)
                   else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
        if (any(getattr(t, "id", "") == name for t in targets) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            return inspect.cleandoc(following.value.value)
    return ""


def _where(entry: str, name: str) -> tuple[str, str]:
    """An ``_EXPORTS`` entry as (module, attribute): ``module`` or ``module:attribute``."""
    module, _, attribute = entry.partition(":")
    return module, attribute or name


def reference() -> str:
    """The whole reference, as docs/api.md holds it."""
    package = importlib.import_module("lifeguard.aws")
    exports: dict[str, str] = package._EXPORTS
    lines = [HEADER, inspect.getdoc(package) or "", ""]
    lines += ["| name | defined in |", "|---|---|"]
    lines += [f"| [`{name}`](#{name.lower()}) | `{_where(exports[name], name)[0]}` |" for name in sorted(exports)]
    lines.append("")
    for name in sorted(exports):
        module, attribute = _where(exports[name], name)
        # Through the package, as a program gets it (its lazy __getattr__ resolves every form of entry).
        value = getattr(package, name)
        if inspect.isclass(value):
            lines += _class_section(name, value)
        else:
            lines += _value_section(name, module, attribute, value)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lifeguard.aws.reference docs/api.md  (rewrites the generated API reference)",
              file=sys.stderr)
        return 2
    Path(argv[0]).write_text(reference(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
