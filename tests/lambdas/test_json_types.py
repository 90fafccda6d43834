"""The one namer of a JSON value's type in messages (event checks, stack outputs): never the value."""

from __future__ import annotations

import pytest

from lambdas.json_types import json_type


@pytest.mark.parametrize(
    ("value", "plain", "whole"),
    [
        (None, "null", "null"),
        (True, "a boolean", "a boolean"),
        (7, "a number", "an integer"),
        (1.0, "a number", "a number with a fraction"),
        ("s3cret", "a string", "a string"),
        ("  ", "an empty string", "an empty string"),
        ([1], "a list", "a list"),
        ([], "an empty list", "an empty list"),
        ({"a": 1}, "an object", "an object"),
    ],
)
def test_names_the_type_not_the_value(value: object, plain: str, whole: str) -> None:
    assert (json_type(value), json_type(value, whole_numbers=True)) == (plain, whole)
