"""A local invoker: the sample functions run as many instances, the way Lambda treats them.

Lambda gives every concurrent request its own instance: a process with the handler module loaded
once, which opens its database connection on the first (cold) invocation and reuses it while warm.
A process per instance is too heavy for thousands of instances on two cores, so a few **worker
processes** each host many instances: an instance is its own :class:`lambdas.db.Database` (its own
connection, opened lazily, kept while warm), and the handler runs through the module's
``handle(event, database)`` seam. Invocations run on a thread pool per worker: psycopg releases the
GIL while it waits on and negotiates connections (measured: one process drives 1.5 cores of
SCRAM/TLS connection setup), so threads give real concurrency where it matters, and the pool size
bounds how many cold starts are in flight at once, as Lambda's own scaling rate does.

The parent talks to each worker over stdin/stdout, one JSON object per line: a job, then ``go``,
and the worker answers with ``ready``, ``progress`` and result lines. The URL reaches the worker
only through its environment (``DATABASE_URL``, as a function gets it), never through argv or a pipe.

Run as ``python -m lifeguard.load.invoker`` (by :class:`WorkerPool`, not by hand).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import queue
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, cast

from database_urls import POOLED_URL_ENV, POOLED_URL_SECRET_ARN_ENV
from lambdas.contract import FUNCTIONS, NODE_FUNCTIONS, NODE_SOURCE_DIR, PREPARED_ENV

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_MODULES = {function.name: function.module for function in FUNCTIONS}
"""The sample functions: name (as in ``AWS_LAMBDA_FUNCTION_NAME``) to handler module."""
_NODE_MODULES = {function.name: function.module for function in NODE_FUNCTIONS}
"""The Node.js functions: hosted by ``node_worker.mjs`` under real Node.js, same protocol."""

PROGRESS_INTERVAL_S = 0.1
LOCAL_SECRET_ARN = "arn:aws:secretsmanager:local:000000000000:secret:lifeguard-local-pooled-url"  # noqa: S105 (an ARN, no secret)
"""What ``DATABASE_URL_SECRET_ARN`` says in a worker whose job reads the URL from a ``secret_file``."""
COMPARE_URL_ENV = "LIFEGUARD_COMPARE_URL"
"""The second URL of a ``paired`` job (benchmarks only; functions never read it)."""
# Environment variables a worker must not inherit: they could point instances at another database.
_URL_ENV = re.compile(rf"^({re.escape(POOLED_URL_ENV)}.*|PG[A-Z]+)$")
_DB_ERROR = re.compile(r"\b(FATAL|ERROR|PANIC):\s+(.*)$", re.DOTALL)


class InvokerError(RuntimeError):
    """A worker failed or misbehaved; the message says which and shows its last log lines."""


# -- inside a worker -----------------------------------------------------------------------


class _LogCapture(logging.Handler):
    """Keep the functions' warning lines per thread: the database's own words behind a 503.

    The handler answers the caller with a fixed sentence (``database_unavailable``/``overloaded``);
    what Postgres or PgBouncer actually said goes to the function's log, as it would to CloudWatch.
    The database client redacts URLs and passwords before logging.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        # The first line that carries the database's words wins: later lines (the handler's own
        # "database unavailable") only repeat the reason.
        if getattr(self.local, "last", None) is None:
            self.local.last = record.getMessage()

    def take(self) -> str | None:
        last: str | None = getattr(self.local, "last", None)
        self.local.last = None
        return last


def database_error(log_line: str | None) -> str | None:
    """``FATAL: sorry, too many clients already`` out of a logged driver error, or None."""
    if not log_line:
        return None
    match = _DB_ERROR.search(log_line)
    if not match:
        # No server message: a transport failure (timeout, refused, reset); keep libpq's words.
        tail = log_line.rsplit("failed:", 1)[-1] if "failed:" in log_line else log_line
        return " ".join(tail.split()).rstrip(")").strip()[:200] or None
    text = " ".join(match.group(2).split()).rstrip(")").strip()
    return f"{match.group(1)}: {text}"[:200]


@dataclass
class Outcome:
    ok: bool
    elapsed_ms: float
    error: str | None = None
    db_error: str | None = None


class Instance:
    """One function instance: its own Database (one connection, lazily opened, reused while warm)."""

    def __init__(self, module: ModuleType, capture: _LogCapture, secret_file: str | None = None) -> None:
        from lambdas.db import Database

        self.module = module
        self.capture = capture
        # With a secret file, the URL comes from "Secrets Manager" (DATABASE_URL_SECRET_ARN), as on AWS: read
        # at the cold start, and again when a login is refused (lambdas.db), from the local stack's pooled.url.
        self.database = Database() if secret_file is None else Database(
            secrets_client_factory=lambda _region: cast("SecretsManagerClient", FileSecret(Path(secret_file))))

    def invoke(self, event: Mapping[str, Any]) -> Outcome:
        start = time.perf_counter()
        self.capture.take()
        try:
            response = self.module.handle(dict(event), self.database)
        except Exception as exc:
            # A handler that raises is an outcome, as on Lambda (the runtime reports an error).
            elapsed = (time.perf_counter() - start) * 1000
            return Outcome(False, elapsed, f"unhandled {type(exc).__name__}", database_error(self.capture.take()))
        elapsed = (time.perf_counter() - start) * 1000
        status = int(response["statusCode"])
        if status == 200:
            return Outcome(True, elapsed)
        try:
            body = json.loads(response["body"])
            error = f"{status} {body.get('error', '')}".strip()
            if body.get("reason"):
                error += f" ({body['reason']})"
        except (ValueError, AttributeError):
            error = str(status)
        return Outcome(False, elapsed, error, database_error(self.capture.take()))

    def close(self) -> None:
        self.database.close()


class FileSecret:
    """Secrets Manager's ``GetSecretValue`` for the local stack: the secret's text is its ``pooled.url``.

    Only the call the functions make; a rotation rewrites the file (atomically) as AWS would put a new
    secret version, so the client's own cold-start read and re-read on a refused login run unchanged.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # boto3 names the keyword so
        return {"ARN": SecretId, "SecretString": self.path.read_text().strip()}


def _load_function(name: str) -> tuple[ModuleType, _LogCapture]:
    if name not in _MODULES:
        raise InvokerError(f"unknown function {name!r}; choose one of {', '.join(_MODULES)}")
    capture = _LogCapture()
    functions_log = logging.getLogger("lambdas")
    functions_log.addHandler(capture)
    functions_log.setLevel(logging.WARNING)
    # Thousands of identical warnings would drown the terminal; they are counted instead.
    functions_log.propagate = False
    return importlib.import_module(_MODULES[name]), capture


class _Channel:
    """The worker's side of the JSON-lines pipe."""

    def __init__(self, inp: IO[str], out: IO[str]) -> None:
        self.inp, self.out = inp, out
        self.lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"))
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def receive(self) -> dict[str, Any]:
        line = self.inp.readline()
        if not line:
            raise SystemExit(0)  # the parent went away: nothing left to report to
        message: dict[str, Any] = json.loads(line)
        return message

    def expect(self, kind: str) -> dict[str, Any]:
        message = self.receive()
        if message.get("type") != kind:
            raise InvokerError(f"expected {kind!r} from the parent, got {message.get('type')!r}")
        return message


@dataclass
class _Tally:
    done: int = 0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    db_errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome, since_go_ms: float | None = None) -> None:
        with self.lock:
            self.done += 1
            if outcome.ok:
                self.ok += 1
                self.latencies.append(round(since_go_ms if since_go_ms is not None else outcome.elapsed_ms, 3))
                if since_go_ms is not None:
                    self.connects.append(round(outcome.elapsed_ms, 3))
            else:
                self.failed += 1
                self.errors[outcome.error or "unknown"] += 1
                if outcome.db_error:
                    self.db_errors[outcome.db_error] += 1

    def report(self, kind: str, cpu_since: float | None = None) -> dict[str, Any]:
        with self.lock:
            return {
                "type": kind, "done": self.done, "ok": self.ok, "failed": self.failed,
                "cpu_s": None if cpu_since is None else round(_cpu_seconds() - cpu_since, 4),
                "latencies_ms": self.latencies, "instance_ms": self.connects,
                "errors": dict(self.errors), "db_errors": dict(self.db_errors),
            }


def _cpu_seconds() -> float:
    """CPU this worker process used (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _progress(channel: _Channel, tally: _Tally) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        last = -1
        while not stop.wait(PROGRESS_INTERVAL_S):
            with tally.lock:
                done, ok, failed = tally.done, tally.ok, tally.failed
            if done != last:
                channel.send({"type": "progress", "done": done, "ok": ok, "failed": failed})
                last = done

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _spike(job: Mapping[str, Any], channel: _Channel) -> None:
    """Cold-start ``instances`` instances at once, keep them all alive, invoke each once more warm."""
    module, capture = _load_function(job["function"])
    event, count, threads = job["event"], int(job["instances"]), int(job["threads"])
    instances = [Instance(module, capture) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # Start the pool's threads before the clock does.
        list(pool.map(lambda _: None, range(threads)))
        channel.send({"type": "ready"})
        channel.expect("go")
        go = time.perf_counter()
        cpu = _cpu_seconds()
        cold = _Tally()

        def cold_start(instance: Instance) -> None:
            outcome = instance.invoke(event)
            cold.add(outcome, since_go_ms=(time.perf_counter() - go) * 1000)

        with _progress(channel, cold):
            list(pool.map(cold_start, instances))
        channel.send(cold.report("cold", cpu))
        # Every instance is alive now, holding its connection (or not, if it failed): what
        # `max_connections` sees. The parent says when to go on, once all workers got here.
        message = channel.receive()
        if message.get("type") == "warm":
            warm = _Tally()
            cpu = _cpu_seconds()
            with _progress(channel, warm):
                list(pool.map(lambda instance: warm.add(instance.invoke(event)), instances))
            report = warm.report("warm", cpu)
            # A warm call must reuse the instance's connection: count any extra connection opened.
            report["reconnects"] = sum(max(0, i.database.stats.connects - 1) for i in instances)
            channel.send(report)
            message = channel.receive()
        if message.get("type") != "release":
            raise InvokerError(f"expected 'release' from the parent, got {message.get('type')!r}")
        list(pool.map(Instance.close, instances))
    channel.send({"type": "closed"})


def _churn(job: Mapping[str, Any], channel: _Channel) -> None:
    """Instances made, invoked and closed one after another: each a cold start with a new login.

    Optional: ``invocations`` per instance (1: every invocation a cold start), ``secret_file`` (the URL
    from :class:`FileSecret`, re-read on a refused login), ``key_prefix`` (each event gets its own
    ``idempotency_key``, ``<prefix>-<thread>-<n>``, so every call is a new charge).
    """
    module, capture = _load_function(job["function"])
    event, threads, duration = job["event"], int(job["threads"]), float(job["duration_s"])
    per_instance, secret_file, prefix = int(job.get("invocations", 1)), job.get("secret_file"), job.get("key_prefix")
    tally = _Tally()
    rereads = 0
    lock = threading.Lock()
    channel.send({"type": "ready"})
    channel.expect("go")
    cpu = _cpu_seconds()
    deadline = time.perf_counter() + duration

    def loop(thread: int) -> None:
        nonlocal rereads
        calls = 0
        while time.perf_counter() < deadline:
            instance = Instance(module, capture, secret_file)
            try:
                for _ in range(per_instance):
                    calls += 1
                    payload = {**event, "idempotency_key": f"{prefix}-{thread}-{calls}"} if prefix else event
                    tally.add(instance.invoke(payload))
                    if time.perf_counter() >= deadline:
                        break
            finally:
                instance.close()
                with lock:
                    rereads += max(0, instance.database.stats.secret_fetches - 1)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(loop, i) for i in range(threads)]:
            future.result()
    report = tally.report("churn", cpu)
    report["secret_rereads"] = rereads
    channel.send(report)


def _queries(job: Mapping[str, Any], channel: _Channel) -> None:
    """Warm connections: each thread one connection, one statement after another, timed each."""
    import psycopg

    url = os.environ[POOLED_URL_ENV]
    sql, threads, duration = job["sql"], int(job["threads"]), float(job["duration_s"])
    warmup = int(job.get("warmup", 200))
    tally = _Tally()
    # ``prepare_threshold``: psycopg's; None (the default here) never prepares.
    threshold = job.get("prepare_threshold")
    connections = [psycopg.connect(url, autocommit=True, prepare_threshold=threshold) for _ in range(threads)]
    try:
        for conn in connections:
            for _ in range(warmup):
                conn.execute(sql).fetchall()
        channel.send({"type": "ready"})
        channel.expect("go")
        cpu = _cpu_seconds()
        deadline = time.perf_counter() + duration

        def loop(conn: psycopg.Connection[Any]) -> None:
            latencies = []
            clock = time.perf_counter
            while True:
                start = clock()
                conn.execute(sql).fetchall()
                end = clock()
                latencies.append(round((end - start) * 1000, 4))
                if end >= deadline:
                    break
            with tally.lock:
                tally.done += len(latencies)
                tally.ok += len(latencies)
                tally.latencies.extend(latencies)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(loop, conn) for conn in connections]:
                future.result()
    finally:
        for conn in connections:
            conn.close()
    channel.send(tally.report("queries", cpu))


def _paired(job: Mapping[str, Any], channel: _Channel) -> None:
    """One client, two warm connections (``DATABASE_URL`` and ``COMPARE_URL_ENV``), in alternating blocks.

    Back-to-back queries on one connection for ``block_s``, then on the other, and so on: each path
    is measured hot (as pgbench does), and alternating blocks puts both under the same background
    load over the run, so the difference between their latencies is the path's own cost.
    (Alternating query by query would instead measure how fast idle processes wake up.)
    """
    import psycopg

    sql, duration = job["sql"], float(job["duration_s"])
    params = job.get("params")
    urls = (os.environ[POOLED_URL_ENV], os.environ[COMPARE_URL_ENV])
    # ``prepare_thresholds``: psycopg's per connection (None: never prepare, as without a tracking pooler).
    thresholds = job.get("prepare_thresholds") or [None, None]
    connections = [psycopg.connect(url, autocommit=True, prepare_threshold=threshold)
                   for url, threshold in zip(urls, thresholds, strict=True)]
    latencies: tuple[list[float], list[float]] = ([], [])
    try:
        for _ in range(int(job.get("warmup", 200))):
            for conn in connections:
                conn.execute(sql, params).fetchall()
        channel.send({"type": "ready"})
        channel.expect("go")
        clock = time.perf_counter
        block = float(job.get("block_s", 0.5))
        deadline = clock() + duration
        while clock() < deadline:
            for conn, samples in zip(connections, latencies, strict=True):
                block_end = clock() + block
                while True:
                    start = clock()
                    conn.execute(sql, params).fetchall()
                    end = clock()
                    samples.append(round((end - start) * 1000, 4))
                    if end >= block_end:
                        break
    finally:
        for conn in connections:
            conn.close()
    channel.send({"type": "paired", "first_ms": latencies[0], "second_ms": latencies[1]})


MODES: dict[str, Callable[[Mapping[str, Any], _Channel], None]] = {
    "spike": _spike, "churn": _churn, "queries": _queries, "paired": _paired,
}


def worker_main() -> int:
    channel = _Channel(sys.stdin, sys.stdout)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # One descriptor per instance's connection; the hard limit is what the machine allows.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    job = channel.receive()
    mode = MODES.get(str(job.get("mode")))
    if mode is None:
        raise InvokerError(f"unknown job mode {job.get('mode')!r}")
    # Thousands of live connection objects make every full collection slow, and nothing here
    # builds reference cycles worth collecting within a run.
    gc.disable()
    mode(job, channel)
    return 0


# -- in the parent ------------------------------------------------------------------------


def worker_env(
    url: str | None, function: str | None, base: Mapping[str, str] | None = None,
    client: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A function's environment: ours without database variables, plus ``DATABASE_URL``.

    ``client`` is what the stack tells functions about their pooler (``LocalStack.client_env``). With no
    ``url``, the functions read it from a secret (:data:`LOCAL_SECRET_ARN`, a job's ``secret_file``).
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not _URL_ENV.match(k) and k != PREPARED_ENV}
    env.update(client or {})
    if url is None:
        env[POOLED_URL_SECRET_ARN_ENV] = LOCAL_SECRET_ARN
    else:
        env[POOLED_URL_ENV] = url
    if function:
        env["AWS_LAMBDA_FUNCTION_NAME"] = function  # shows as application_name in pg_stat_activity
    return env


def node_source_dir() -> Path:
    """The Node.js sample's folder (``lambdas-node/``), beside ``lambdas/`` in a checkout of lifeguard.

    A sample, not part of the library: an install from a wheel has no Node.js sample to run.
    """
    import lambdas

    folder = Path(lambdas.__file__).resolve().parent.parent / NODE_SOURCE_DIR
    if not (folder / "package-lock.json").is_file():
        raise InvokerError(f"the Node.js sample function runs from a checkout of lifeguard ({folder} is missing)")
    return folder


def worker_command(function: str | None) -> list[str]:
    """How a worker for ``function`` starts: this module, or Node.js hosting a Node.js function.

    A Node.js function runs from ``lambdas-node/`` of this checkout, installed from its lock
    (``npm ci --omit=dev``, cached), with the node :func:`lifeguard.aws.npm.find_node` picks.
    """
    if function not in _NODE_MODULES:
        return [sys.executable, "-m", "lifeguard.load.invoker"]
    from lifeguard.aws.npm import NpmError, find_node, install
    from lifeguard.stack.pgbouncer_install import cache_dir

    try:
        node = find_node()
        installed = install(node_source_dir(), cache_dir() / "node-function", node, omit_dev=True)
    except NpmError as exc:
        raise InvokerError(str(exc)) from None
    return [str(node), str(Path(__file__).with_name("node_worker.mjs")), str(installed), _NODE_MODULES[function]]


def _open_files_to_hard_limit() -> None:
    """In a Node.js worker before it starts (Node.js cannot raise it): one descriptor per instance."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def split(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` workers as evenly as possible (no worker gets zero)."""
    parts = max(1, min(parts, total)) if total else 1
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class WorkerPool:
    """Worker processes running one job each, driven in lock-step (ready, go, results)."""

    def __init__(self, jobs: list[dict[str, Any]], env: Mapping[str, str], start_timeout: float = 120) -> None:
        self.jobs = jobs
        self.env = dict(env)
        self.start_timeout = start_timeout
        self.events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.processes: list[subprocess.Popen[str]] = []
        self._logdir = tempfile.TemporaryDirectory(prefix="lifeguard-workers-")
        self._readers: list[threading.Thread] = []

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _log(self, index: int) -> Path:
        return Path(self._logdir.name) / f"worker-{index}.log"

    def start(self) -> None:
        for index, job in enumerate(self.jobs):
            command = worker_command(job.get("function"))
            with self._log(index).open("w") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    env=self.env, text=True, bufsize=1,
                    preexec_fn=_open_files_to_hard_limit if command[0] != sys.executable else None,
                )
            self.processes.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            reader = threading.Thread(target=self._read, args=(index, process), daemon=True)
            reader.start()
            self._readers.append(reader)
        self.collect("ready", timeout=self.start_timeout)

    def _read(self, index: int, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                self.events.put((index, json.loads(line)))
            except json.JSONDecodeError:
                continue
        self.events.put((index, None))

    def send(self, message: Mapping[str, Any]) -> None:
        line = json.dumps(message) + "\n"
        for process in self.processes:
            if process.poll() is None and process.stdin is not None:
                try:
                    process.stdin.write(line)
                    process.stdin.flush()
                except BrokenPipeError:
                    pass

    def collect(
        self,
        kind: str,
        timeout: float,
        on_progress: Callable[[int, dict[str, Any]], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> list[dict[str, Any]]:
        """One ``kind`` message from every worker, in worker order; progress goes to ``on_progress``."""
        results: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(self.processes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InvokerError(f"workers did not report {kind!r} within {timeout:.0f} s")
            try:
                index, message = self.events.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                if tick:
                    tick()
                continue
            if message is None:
                if index in results:
                    continue  # it said what we waited for, then exited: its job is done
                raise InvokerError(f"worker {index} exited early:\n{self.log_tail(index)}")
            if message.get("type") == kind:
                results[index] = message
            elif message.get("type") == "progress" and on_progress:
                on_progress(index, message)
            if tick:
                tick()
        return [results[i] for i in range(len(self.processes))]

    def log_tail(self, index: int, lines: int = 20) -> str:
        process = self.processes[index]
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        text = self._log(index).read_text(errors="replace") if self._log(index).exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or f"(no output; exit code {process.returncode})"

    def close(self, timeout: float = 30) -> None:
        for process in self.processes:
            if process.stdin is not None and not process.stdin.closed:
                with suppress(BrokenPipeError):
                    process.stdin.close()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        self._logdir.cleanup()


if __name__ == "__main__":
    sys.exit(worker_main())
