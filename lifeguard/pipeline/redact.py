"""Mask credentials in text the pipeline prints but did not write itself (task logs, function errors).

The migrator and the functions are not supposed to print their database URL, but a driver error can
quote one; the pipeline's own output must never carry a password into CI logs.
"""

from __future__ import annotations

import re

# scheme://user:password@host. Greedy up to the last '@' before the path, so a password with a
# raw, unescaped '@' is masked whole rather than half.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^/\s]+@")
# libpq keyword form: password=... (quoted or bare).
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

MASK = "***"


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", text)
