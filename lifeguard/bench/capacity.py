"""The headline: PgBouncer's own CPU per login and per warm query, as shipped, beside its variants.

Each variant is one more PgBouncer process, started beside the stack's own against the same
Postgres, with the shipped settings (:meth:`LocalStack.pooler_settings`) and one change: the
plain password in ``auth_file``, no TLS, another certificate key type, a packet or loop setting,
logging. Its CPU is read from ``/proc`` (the scheduler's nanosecond clock), so other work on a
shared machine slows a run down without adding to what PgBouncer spent; the rounds repeat every
variant in a rotating order to show the spread.

- login: the sample client's cold start, a new :class:`lambdas.db.Database` running
  ``read_invoices`` then closing (TCP, TLS, SCRAM, the function's transaction, goodbye), from
  ``login_clients`` threads for ``login_seconds``;
- warm query: ``SELECT 1`` on ``warm_clients`` kept connections, prepared as the client prepares
  behind this pooler (``LIFEGUARD_POOLER_PREPARED_STATEMENTS``).

Absolute CPU times do not carry from one machine to another, so each figure also comes as a ratio
to a floor measured in the same run: a login to the server side of OpenSSL's bare TLS 1.3
handshake (:mod:`lifeguard.bench.tls_floor`), a warm query to Postgres' own CPU per ``SELECT 1``
(its backends' CPU over the same warm phase).

``pgbouncer_1_24_1`` and ``pgbouncer_1_24_1_plain_password`` run Debian 13's own PgBouncer 1.24.1
(the binary package the image shipped before 1.26.1, ``scripts/install-pgbouncer.sh debian13``)
with the same settings rendered for its release: the before/after of the upgrade, in one run.

Every variant's pool is filled before the first round, so server logins (and their TLS
handshakes) are not counted per client login: on a running pooler they are rare
(``server_lifetime``, ``server_idle_timeout``).
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from lambdas.contract import PREPARED_ENV, READ_INVOICES
from lambdas.db import ClientSettings
from lifeguard.bench import tls_floor
from lifeguard.bench.cpu import ServerCpu, process_cpu_ns
from lifeguard.bench.experiments import allow_plain_tcp, write_certificate
from lifeguard.bench.machine import load_average
from lifeguard.bench.sizing import PoolerCost, Spread
from lifeguard.load.invoker import WorkerPool, split, worker_env
from lifeguard.stack.pgbouncer_install import installed_binary
from lifeguard.stack.pooler import PoolerProcess, installed_version
from lifeguard.stack.postgres import make_dsn
from lifeguard.stack.stack import LocalStack, StackConfig
from lifeguard.stack.system import free_port
from pgbouncer.contract import STATS_USER
from pgbouncer.settings import PoolerSettings
from pgbouncer.versions import PACKAGES

Say = Callable[[str], None]
TARGET_LOGIN_MS = 0.5
TARGET_QUERY_US = 25.0
WARM_SQL = "SELECT 1"
SHIPPED = "shipped"


@dataclass(frozen=True)
class PoolerVariant:
    key: str
    label: str
    group: str
    """``shipped``, ``baseline`` (the issue's reference points) or ``experiment`` (a lever tried)."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """:class:`PoolerSettings` fields that differ from the shipped ones."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Further ``[pgbouncer]`` keys (``PoolerSettings.extra``)."""
    plain_password: bool = False
    key_type: str = ""
    """Certificate key type for client TLS; empty: the entrypoint's own (P-256)."""
    package: str = ""
    """Another installed PgBouncer (a key of :data:`pgbouncer.versions.PACKAGES`); empty: the stack's."""

    @property
    def client_sslmode(self) -> str:
        return "disable" if self.fields.get("client_tls_sslmode") == "disable" else "require"

    @property
    def server_plain_tcp(self) -> bool:
        return self.fields.get("server_tls_sslmode") == "disable"


_NO_TLS = {"client_tls_sslmode": "disable", "server_tls_sslmode": "disable"}
VARIANTS: tuple[PoolerVariant, ...] = (
    PoolerVariant(SHIPPED, "as shipped: client TLS (P-256), server TLS verify-full, SCRAM verifier, "
                  "prepared statements", "shipped"),
    PoolerVariant("plain_password", "plain password in auth_file", "baseline", plain_password=True),
    PoolerVariant("no_tls", "no TLS on either side", "baseline", fields=_NO_TLS),
    PoolerVariant("server_tls_off", "server_tls_sslmode=disable (client TLS on)", "experiment",
                  fields={"server_tls_sslmode": "disable"}),
    PoolerVariant("cert_rsa2048", "RSA-2048 certificate", "experiment", key_type="rsa2048"),
    PoolerVariant("cert_ed25519", "Ed25519 certificate", "experiment", key_type="ed25519"),
    PoolerVariant("pkt_buf_16k", "pkt_buf=16384 (default 4096)", "experiment", extra={"pkt_buf": "16384"}),
    PoolerVariant("sbuf_loopcnt_0", "sbuf_loopcnt=0, no limit (default 5)", "experiment",
                  extra={"sbuf_loopcnt": "0"}),
    PoolerVariant("tcp_defer_accept_0", "tcp_defer_accept=0 (default 1 on Linux)", "experiment",
                  extra={"tcp_defer_accept": "0"}),
    PoolerVariant("log_connections", "log_connections=1 and log_disconnections=1 (shipped: 0)", "experiment",
                  fields={"log_connections": True, "log_disconnections": True}),
    PoolerVariant("stats_off", "log_stats=0 (shipped: 1, a line every stats_period)", "experiment",
                  fields={"log_stats": False}),
    PoolerVariant("pgbouncer_1_24_1", "Debian 13's PgBouncer 1.24.1 (shipped before 1.26.1), same settings",
                  "baseline", package="debian13"),
    PoolerVariant("pgbouncer_1_24_1_plain_password", "Debian 13's PgBouncer 1.24.1, plain password in auth_file",
                  "baseline", plain_password=True, package="debian13"),
)
VARIANT_KEYS = tuple(v.key for v in VARIANTS)
# By default every variant the stack's own binary runs; the 1.24.1 ones need their own install.
DEFAULT_VARIANTS = tuple(v.key for v in VARIANTS if not v.package)


@dataclass(frozen=True)
class CapacitySettings:
    rounds: int = 3
    login_seconds: float = 3.0
    warm_seconds: float = 2.0
    login_clients: int = 4
    warm_clients: int = 4
    workers: int = 1
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    images: bool = False
    """Also measure the shipped pooler image, as its task runs it (:mod:`lifeguard.bench.image_cpu`; root)."""

    def check(self) -> None:
        if self.rounds < 1:
            raise ValueError("--capacity-rounds must be at least 1")
        if self.login_seconds <= 0 or self.warm_seconds <= 0:
            raise ValueError("--capacity-login-seconds and --capacity-warm-seconds must be positive")
        if self.login_clients < 1 or self.warm_clients < 1 or self.workers < 1:
            raise ValueError("capacity clients and workers must be at least 1")
        unknown = [k for k in self.variants if k not in VARIANT_KEYS]
        if unknown:
            raise ValueError(f"unknown capacity variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANT_KEYS)}")
        if SHIPPED not in self.variants:
            raise ValueError(f"--capacity-variants must include {SHIPPED!r}: it is the headline")

    @property
    def pool_size(self) -> int:
        return max(self.login_clients, self.warm_clients)


@dataclass
class Measured:
    """One PgBouncer under measurement: started here (``process``), or found running (``host_pid``)."""

    variant: PoolerVariant
    url: str
    client_env: dict[str, str]
    prepare_threshold: int | None
    process: PoolerProcess | None = None
    host_pid: int | None = None
    """A PgBouncer this run did not start: the pooler image's container, seen from the host."""


def variant_settings(base: PoolerSettings, variant: PoolerVariant, root: Path, listen_port: int,
                     pool_size: int) -> PoolerSettings:
    """The shipped settings with this variant's change, in its own directory and on its own port."""
    return dataclasses.replace(
        base,
        listen_port=listen_port,
        unix_socket_dir=str(root),
        auth_file=str(root / "userlist.txt"),
        client_tls_cert_file=str(root / "tls" / "pgbouncer.crt"),
        client_tls_key_file=str(root / "tls" / "pgbouncer.key"),
        default_pool_size=pool_size,
        max_db_connections=0,
        so_reuseport=False,
        extra={**base.extra, **variant.extra},
        **variant.fields,
    )


def variant_binary(stack: LocalStack, config: StackConfig, variant: PoolerVariant) -> Path:
    if not variant.package:
        return stack.pgbouncer_binary(config)
    binary = installed_binary(PACKAGES[variant.package])
    if not binary.exists():
        raise ValueError(f"the {variant.key} variant runs {binary}, which is not installed: "
                         f"run scripts/install-pgbouncer.sh {variant.package}")
    return binary


def _start_variant(stack: LocalStack, config: StackConfig, variant: PoolerVariant, root: Path,
                   pool_size: int) -> Measured:
    binary = variant_binary(stack, config, variant)
    base = dataclasses.replace(stack.pooler_settings(config, 1), version=str(installed_version(binary)))
    settings = variant_settings(base, variant, root, free_port(), pool_size)
    # A fresh folder of ours each round: the service user owned the last one (see PoolerProcess._fresh_root).
    shutil.rmtree(root, ignore_errors=True)
    if variant.key_type:
        write_certificate(Path(settings.client_tls_cert_file), Path(settings.client_tls_key_file), variant.key_type)
    login = stack.active_login(config)
    secret = stack.login_password(login) if variant.plain_password else stack.login_verifier(config, login)
    process = PoolerProcess(root=root, settings=settings, binary=binary)
    process.start({login.name: secret, STATS_USER: stack.stats_password()})
    url = make_dsn("127.0.0.1", settings.listen_port, login.name, stack.login_password(login), config.dbname,
                   sslmode=variant.client_sslmode)
    client_env = {PREPARED_ENV: "1" if settings.tracks_prepared_statements else "0"}
    threshold = ClientSettings.from_env(client_env).prepare_threshold
    return Measured(variant, url, client_env, threshold, process=process)


def fill_pool(url: str, size: int) -> None:
    """Open ``size`` server connections at once, so the rounds only count client work."""
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=10) as conn:
                conn.execute("SELECT pg_sleep(0.3)")
        except psycopg.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _pid(running: Measured) -> int:
    if running.host_pid is not None:
        return running.host_pid
    assert running.process is not None
    pid = running.process.pid()
    if pid is None:
        raise RuntimeError(f"PgBouncer for the {running.variant.key} variant is not running:\n"
                           f"{running.process.log_tail()}")
    return pid


def _run_measuring_cpu(running: Measured, jobs: list[dict[str, Any]], env: dict[str, str], kind: str,
                       seconds: float) -> tuple[list[dict[str, Any]], int]:
    """Run ``jobs`` once the workers are up; their reports and the nanoseconds of CPU this PgBouncer spent."""
    with WorkerPool(jobs, env) as pool:
        pid = _pid(running)
        before = process_cpu_ns(pid)
        pool.send({"type": "go"})
        reports = pool.collect(kind, seconds + 120)
        spent = process_cpu_ns(pid) - before
    return reports, spent


def measure_logins(running: Measured, org_id: int, settings: CapacitySettings) -> dict[str, Any]:
    jobs = [{"mode": "churn", "function": READ_INVOICES.name, "event": {"org_id": org_id}, "threads": n,
             "duration_s": settings.login_seconds} for n in split(settings.login_clients, settings.workers)]
    env = worker_env(running.url, READ_INVOICES.name, client=running.client_env)
    reports, spent = _run_measuring_cpu(running, jobs, env, "churn", settings.login_seconds)
    ok = sum(int(r["ok"]) for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in {**r["errors"], **r["db_errors"]}.items():
            errors[k] = errors.get(k, 0) + int(v)
    return {"logins": ok, "failed": sum(int(r["failed"]) for r in reports), "errors": errors,
            "cpu_ms": round(spent / 1e6, 3), "ms_per_login": round(spent / 1e6 / ok, 4) if ok else None}


def measure_warm(running: Measured, settings: CapacitySettings, postgres: ServerCpu) -> dict[str, Any]:
    """PgBouncer's CPU per warm query, and Postgres' own over the same phase (the query's floor)."""
    jobs = [{"mode": "queries", "sql": WARM_SQL, "threads": n, "duration_s": settings.warm_seconds,
             "prepare_threshold": running.prepare_threshold}
            for n in split(settings.warm_clients, settings.workers)]
    env = worker_env(running.url, None, client=running.client_env)
    postgres_before = postgres.sample().postgres_s
    reports, spent = _run_measuring_cpu(running, jobs, env, "queries", settings.warm_seconds)
    postgres_s = postgres.sample().postgres_s - postgres_before
    queries = sum(int(r["ok"]) for r in reports)
    return {"queries": queries, "cpu_ms": round(spent / 1e6, 3),
            "us_per_query": round(spent / 1e3 / queries, 3) if queries else None,
            "postgres_us_per_query": round(postgres_s * 1e6 / queries, 3) if queries else None}


def measure(stack: LocalStack, config: StackConfig, org_id: int, settings: CapacitySettings, root: Path,
            say: Say) -> dict[str, Any]:
    """Every chosen variant, ``rounds`` times in rotating order; raw figures per round. Removes ``root`` after."""
    settings.check()
    chosen = [v for v in VARIANTS if v.key in settings.variants]
    started = time.time()
    load_start = load_average()
    if any(v.server_plain_tcp for v in chosen):
        allow_plain_tcp(stack, config)
    running: list[Measured] = []
    postgres = ServerCpu.from_state(stack.cluster(config).postmaster_pid(), [])
    try:
        for variant in chosen:
            r = _start_variant(stack, config, variant, root / variant.key, settings.pool_size)
            running.append(r)
            fill_pool(r.url, settings.pool_size)
        rounds: dict[str, list[dict[str, Any]]] = {v.key: [] for v in chosen}
        loads = []
        for n in range(settings.rounds):
            order = running[n % len(running):] + running[:n % len(running)]
            for r in order:
                logins = measure_logins(r, org_id, settings)
                warm = measure_warm(r, settings, postgres)
                rounds[r.variant.key].append({"round": n + 1, **logins, **warm})
                say(f"[capacity] round {n + 1}/{settings.rounds} {r.variant.key}: "
                    f"{logins['ms_per_login']} ms per login ({logins['logins']} logins, {logins['failed']} failed), "
                    f"{warm['us_per_query']} us per warm query ({warm['queries']} queries)")
            loads.append(load_average())
        shipped_process = next(r for r in running if r.variant.key == SHIPPED).process
        assert shipped_process is not None
        shipped = shipped_process.settings
        say("[capacity] OpenSSL's own TLS 1.3 handshake with the shipped certificate (openssl s_server)")
        floor = tls_floor.measure(Path(shipped.client_tls_cert_file), Path(shipped.client_tls_key_file),
                                  settings.rounds)
    finally:
        for r in running:
            if r.process is not None:
                r.process.stop()
        # Throwaway like the stacks: the variants' ini, auth_file (secrets) and keys go with them.
        shutil.rmtree(root, ignore_errors=True)
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "settings": dataclasses.asdict(settings),
        "pgbouncer": str(stack.pooler_settings(config, 1).version),
        "releases": {v.key: str(installed_version(variant_binary(stack, config, v))) for v in chosen},
        "load_average_at_start": load_start,
        "load_average_after_rounds": loads,
        "tls_handshake": floor,
        "variants": {v.key: {"label": v.label, "group": v.group, "rounds": rounds[v.key]} for v in chosen},
    }


def summarize(capacity: Mapping[str, Any]) -> dict[str, Any]:
    """Median and spread per variant, what it implies per vCPU, and its change against the shipped one."""
    out: dict[str, Any] = {}
    floor = tls_floor_ms(capacity)
    for key, v in capacity["variants"].items():
        login = Spread.of([r["ms_per_login"] for r in v["rounds"] if r["ms_per_login"] is not None])
        query = Spread.of([r["us_per_query"] for r in v["rounds"] if r["us_per_query"] is not None])
        postgres = [r["postgres_us_per_query"] for r in v["rounds"] if r.get("postgres_us_per_query")]
        cost = PoolerCost(login.median, query.median)
        out[key] = {
            "label": v["label"], "group": v["group"],
            "release": capacity.get("releases", {}).get(key, capacity["pgbouncer"]),
            # Ratios to the floors measured in the same run: they carry from one machine to another.
            "login_per_tls_handshake": round(login.median / floor, 2) if floor else None,
            "postgres_us_per_query": Spread.of(postgres).median if postgres else None,
            "query_per_postgres_query": round(query.median / Spread.of(postgres).median, 2) if postgres else None,
            "login_ms": dataclasses.asdict(login), "query_us": dataclasses.asdict(query),
            "failed_logins": sum(int(r["failed"]) for r in v["rounds"]),
            "cold_starts_per_vcpu": round(cost.cold_starts_per_vcpu),
            "queries_per_vcpu": round(cost.queries_per_vcpu),
        }
    shipped = out.get(SHIPPED)
    if shipped is None:  # the image's run: one variant of its own, nothing to compare with
        return out
    for entry in out.values():
        entry["login_change_percent"] = _change(entry["login_ms"]["median"], shipped["login_ms"]["median"])
        entry["query_change_percent"] = _change(entry["query_us"]["median"], shipped["query_us"]["median"])
    return out


def tls_floor_ms(capacity: Mapping[str, Any]) -> float | None:
    """The median server CPU of OpenSSL's bare TLS 1.3 handshake in this run (with the two session
    tickets PgBouncer sends too), the floor a login's figure is divided by."""
    tls = capacity.get("tls_handshake")
    return Spread.of(tls["ms_per_handshake"]["tickets_2"]).median if tls else None


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The shipped figures against the targets."""
    s = summary[SHIPPED]
    return {
        "login_ms": s["login_ms"]["median"], "query_us": s["query_us"]["median"],
        "cold_starts_per_vcpu": s["cold_starts_per_vcpu"], "queries_per_vcpu": s["queries_per_vcpu"],
        "login_target_ms": TARGET_LOGIN_MS, "query_target_us": TARGET_QUERY_US,
        "login_met": s["login_ms"]["median"] <= TARGET_LOGIN_MS,
        "query_met": s["query_us"]["median"] <= TARGET_QUERY_US,
    }


def _change(value: float, reference: float) -> float:
    return round((value - reference) / reference * 100, 1)


def variants_from_text(text: str) -> Sequence[str]:
    """``--capacity-variants``: comma-separated keys, or ``all``."""
    if text.strip() == "all":
        return VARIANT_KEYS
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    return keys if SHIPPED in keys else (SHIPPED, *keys)
