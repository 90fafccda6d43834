"""Fetch the RDS CA bundle when the image is built, and refuse anything that is not one.

The direct URL verifies the database (``sslmode=verify-full&sslrootcert=`` this bundle's path), so
a build that saved an error page instead would give an image that fails every TLS handshake.
AWS rotates the bundle and publishes no digest to pin: the check is that the download is a PEM
bundle whose every certificate OpenSSL loads. The Dockerfile runs this file as a plain script
(stdlib only) before the package is copied: ``python cabundle.py URL DEST``.
"""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_BUNDLE_PATH = Path("/etc/ssl/certs/rds-global-bundle.pem")
MAX_BYTES = 4 * 1024 * 1024
BEGIN = "-----BEGIN CERTIFICATE-----"


class BundleError(Exception):
    pass


def check_bundle(pem: bytes) -> int:
    """The number of certificates in ``pem``; raises BundleError unless it is a loadable PEM bundle."""
    try:
        text = pem.decode("ascii")
    except UnicodeDecodeError:
        raise BundleError("not a PEM bundle: it has non-ASCII bytes") from None
    count = text.count(BEGIN)
    if count == 0:
        raise BundleError("not a PEM bundle: no certificate in it")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except ssl.SSLError as exc:
        raise BundleError(f"OpenSSL cannot load it: {exc}") from None
    if context.cert_store_stats()["x509"] < 1:
        raise BundleError("OpenSSL loaded no certificate from it")
    return count


def fetch(url: str, dest: Path, timeout: float = 60) -> int:
    """Download ``url`` (https, or file for an offline copy), check it, write it to ``dest`` (0644)."""
    if urlsplit(url).scheme not in ("https", "file"):
        raise BundleError("the bundle URL must be https:// (or file:// for a local copy)")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise BundleError(f"larger than {MAX_BYTES} bytes: not the CA bundle")
    count = check_bundle(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 2:
        print("usage: python cabundle.py [URL [DEST]]", file=sys.stderr)
        return 2
    url = args[0] if args else RDS_CA_BUNDLE_URL
    dest = Path(args[1]) if len(args) > 1 else RDS_CA_BUNDLE_PATH
    try:
        count = fetch(url, dest)
    except (BundleError, OSError) as exc:
        print(f"cabundle: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"cabundle: {count} certificate(s) from {url} written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
