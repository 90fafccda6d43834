"""What a JSON value is, in words, for error messages: the handlers' event checks and the pipeline's
stack outputs say what they got without showing it (a value may be a secret). Standard library only:
the pipeline install imports it too."""

from __future__ import annotations


def json_type(value: object, *, whole_numbers: bool = False) -> str:
    """The JSON type of ``value`` with an article ("a string", "an empty list", ...), never the value.

    ``whole_numbers``: tell an integer from a number with a fraction, for fields that must be whole.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        if not whole_numbers:
            return "a number"
        return "an integer" if isinstance(value, int) else "a number with a fraction"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
