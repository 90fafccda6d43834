"""Keeping credentials out of text: the kit's one redactor, standard library only.

Every deployable imports this package: the functions' zip and the migration job's image ship it
beside their own package (``lifeguard/aws/lambda_package.py``, ``lifeguard/aws/image.py``), and the
CLI (pipeline, local stack) imports it from the repository. Two tools:

* :class:`Redactor` masks known secrets (a URL and every form of its password, or any string)
  and, in any text, whatever looks like a password in a URL or a ``password=`` keyword. It is a
  :class:`logging.Filter` too. A password that is not percent-encoded (a raw ``/``, ``@``,
  ``?``, ``#`` or space) is still found: the user info runs to the *last* ``@``.
* :func:`url_problem` says what is wrong with a ``postgresql://`` URL that libpq would misread,
  *without quoting any of it*: libpq takes ``postgresql://app:pa/ss@db`` as host ``app``, port
  ``pa`` and database ``ss@db``, so its own messages (and anything built from its parse) would
  show the password.

Hand-written: the logic is a few regular expressions over text; no library we know of masks a
URL's password in free text and also catches the un-encoded forms libpq misparses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"
_MIN_PIECE = 4

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://", re.ASCII)
# In free text: scheme://user:PASSWORD@ with the password running to the last '@' on the line
# (within 4 kB, twice PgBouncer's longest password), so a raw '@', '/', '?', '#' or space inside it
# is masked whole rather than half. Every part is bounded: unbounded, each start scanned to the end of
# the line, and a long "a.a.a." (or many "a://b:" without an '@') took quadratic time, seconds for a
# 40 kB line a database could write.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/@\s]{0,256}:)[^\n]{0,4096}@")
# libpq keyword form: password=... (quoted with '...' and backslash escapes, or bare). The value of
# a URL's keyword form runs to the next '&' (see _passwords).
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s']\S*)", re.IGNORECASE)
# Any other way text names a password: a key ending in "password" (PGPASSWORD, sslpassword,
# db_password, a JSON or Python dict's "password"), then '=' or ':', then the value: double- or
# single-quoted (spaces and escapes inside), an unclosed quote (to the end of the line), or bare
# (to the next blank). "password_encryption", "passwords" or "password authentication" are no key.
# The key's prefix is bounded for the same reason as _URL_PASSWORD's parts (12 s for 40 kB unbounded).
_ANY_PASSWORD = re.compile(
    r"""(?P<head>[\w.-]{0,64}password(?P<q>["']?)[ \t]*[=:][ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.|'')*'|["'][^\n]*|[^\s"']\S*)""",
    re.IGNORECASE,
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# RFC 3986 user info: unreserved, sub-delims, ':' and %XX; nothing else may appear raw.
_USERINFO = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*$")
_HOSTS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::[0-9]*)?$")
_POSTGRES_SCHEMES = ("postgresql", "postgres")

ENCODE_HINT = (
    "percent-encode the user and password (a '/' as %2F, '@' as %40, '?' as %3F, '#' as %23, a space as "
    "%20, '%' as %25; in Python: urllib.parse.quote(password, safe=''))"
)


def url_problem(url: str) -> str | None:
    """Why libpq would misread ``url`` (a ``postgresql://`` URL), or None; never quotes the URL.

    Strings in libpq's ``key=value`` form, and other schemes, are not checked here.
    """
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group("scheme").lower() not in _POSTGRES_SCHEMES:
        return None
    rest = url[scheme.end():]
    # The authority ends at the first '/', '?' or '#', as libpq and RFC 3986 read it.
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        hosts = authority
        if "@" in rest:
            return (
                "the URL has an '@' after its host part, so a password in it holds a raw '/', '?' or '#'; "
                + ENCODE_HINT
            )
    elif not _USERINFO.match(userinfo) or "@" in userinfo:
        return "the URL's user or password holds characters that must be percent-encoded; " + ENCODE_HINT
    for host in hosts.split(","):
        if not _HOSTS.match(host):
            return "the URL's host:port part is not valid (a port must be a number); if it holds a password, " + (
                ENCODE_HINT
            )
    return None


class Redactor(logging.Filter):
    """Masks the secrets it was given, and anything that looks like a password, in any text.

    As a logging filter it masks a record's message before any handler writes it.
    """

    def __init__(self, urls: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._ordered: list[re.Pattern[str]] = []
        for url in urls:
            self.add_url(url)
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` as written, percent-encoded and percent-decoded (%xx in either case)."""
        if not secret:
            return
        for base in {secret, unquote(secret)}:
            self._secrets |= {s for s in (base, quote(base, safe=""), quote(base)) if len(s) > 1}
        # Longest first, so a URL is masked whole rather than around its masked password.
        self._ordered = [_secret_pattern(s) for s in sorted(self._secrets, key=len, reverse=True)]

    def add_url(self, url: str) -> None:
        """Mask ``url`` itself and its password in every form, however badly the URL is encoded."""
        self.add_secret(url)
        for password in _passwords(url):
            self.add_secret(password)
            # libpq splits a badly encoded password on these, and quotes the pieces (as a host, a
            # port, a database name): mask each piece long enough not to be an ordinary word.
            for piece in re.split(r"[/@?#:\s]", password):
                if len(piece) >= _MIN_PIECE:
                    self.add_secret(piece)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            text = secret.sub(MASK, text)
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _secret_pattern(secret: str) -> re.Pattern[str]:
    """``secret`` literally, except that its %XX escapes match in any case (%2F, %2f)."""
    pieces, last = [], 0
    for escape in _PERCENT_ESCAPE.finditer(secret):
        pieces += [re.escape(secret[last:escape.start()]), f"%(?i:{escape.group()[1:]})"]
        last = escape.end()
    return re.compile("".join([*pieces, re.escape(secret[last:])]))


def redact(text: str) -> str:
    """Mask whatever looks like a password in ``text``: ``scheme://user:***@``, ``password=***``,
    ``PGPASSWORD=***``, ``"password": ***``, ``password: ***`` and the like."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _ANY_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", text)


def _passwords(url: str) -> list[str]:
    """Every reading of ``url``'s password: the user info up to the last '@', and the keyword form."""
    found: list[str] = []
    scheme = _SCHEME.match(url)
    if scheme is not None:
        rest = url[scheme.end():]
        userinfo, at, _ = rest.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        # Also the strict reading (to the first '@'), which is what libpq would send.
        first, at, _ = rest.partition("@")
        if at and ":" in first:
            found.append(first.split(":", 1)[1])
    for match in _KEYWORD_PASSWORD.finditer(url):
        value = match.group("value")
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value.split("&", 1)[0] if scheme is not None else value)
    return [p for p in found if p]
