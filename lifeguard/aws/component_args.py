"""Reading a public component's args dict, the same from a Python program and from the provider.

From a Python program an ``int`` field holds an ``int``. Through the component provider every number
crosses the wire as a double, and ``ComponentProvider`` (pulumi 3.272) hands the component ``100.0``:
its integer conversion is overwritten by the plain copy that follows it. So whole-number fields accept a
float with no fractional part, and nothing else.
"""

import math


def whole_number(value: object, field: str, error: type[Exception] = ValueError) -> int:
    """``value`` as an ``int``: an int, or a float with no fraction (not a bool); else ``error`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{field} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise error(f"{field} must be a whole number, got {value!r}")
        return int(value)
    return value


def number(value: object, field: str, error: type[Exception] = ValueError) -> float:
    """``value`` as a finite ``float`` (an int is fine); else ``error`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise error(f"{field} must be a number, got {value!r}")
    return float(value)
