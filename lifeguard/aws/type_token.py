"""The Pulumi type token each public component registers, in a Python program and in the provider.

A Python program that imports :mod:`lifeguard.aws` keeps the tokens the components have always had
(``lifeguard:pooler:Pooler``): they are part of every deployed resource's URN, and so of its children's.

The component provider (``python -m lifeguard.aws.provider``, what ``pulumi package add`` runs) serves
a schema whose tokens the SDK's analyzer puts in one module, ``index``
(``lifeguard:index:Pooler``), and its ``ComponentProvider`` constructs only ``<package>:index:<Class>``.
A component it hosts registers under that same token, as Pulumi's own component boilerplate does, so
the type in the TypeScript or Go program, in the generated SDK (its resource-reference registry) and
in the stack's state agree. The provider process says so once, at start, with :func:`host_components`.
"""

PACKAGE = "lifeguard"
HOSTED_MODULE = "index"
"""The only module the SDK's analyzer and ComponentProvider know."""

_hosting = False


def host_components() -> None:
    """This process is the component provider: components register ``lifeguard:index:<Class>`` from now on."""
    global _hosting
    _hosting = True


def stop_hosting() -> None:
    """Back to the Python program's tokens (for tests that construct through the provider in-process)."""
    global _hosting
    _hosting = False


def hosting() -> bool:
    return _hosting


def component_type(component: type, module: str) -> str:
    """``lifeguard:<module>:<Class>`` in a Python program, ``lifeguard:index:<Class>`` in the provider."""
    return f"{PACKAGE}:{HOSTED_MODULE if _hosting else module}:{component.__name__}"
