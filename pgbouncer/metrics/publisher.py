"""The metrics sidecar: sample the console every interval and print EMF records to stdout.

Runs next to PgBouncer in the pooler task (same image, ``python -m pgbouncer.metrics``), sharing
the volume that holds PgBouncer's Unix socket. It survives PgBouncer restarts: a failed sample is
logged once (to stderr) and retried on the next interval, with ``ConsoleUp`` 0 in the metrics
meanwhile; the loop only ends on SIGTERM/SIGINT.

Environment (nothing here is secret except the password, which is never printed; the names are
:mod:`pgbouncer.contract`'s):
  LIFEGUARD_METRICS_HOST         unix_socket_dir (a path) or a host; default: the pooler settings'
                                 unix_socket_dir, else /tmp
  LIFEGUARD_METRICS_PORT         PgBouncer's listen_port; default: the pooler settings', else 6432
  LIFEGUARD_PGBOUNCER_SETTINGS   the pooler settings JSON; supplies the two defaults above
  LIFEGUARD_METRICS_CREDENTIALS  JSON {"username": ..., "password": ...} of a stats_users user
                                 (the Secrets Manager secret, injected by ECS)
  LIFEGUARD_METRICS_USER         instead of credentials: a user that needs no password (the
                                 ``pgbouncer`` user over the socket, under PgBouncer's uid)
  LIFEGUARD_METRICS_NAMESPACE    CloudWatch namespace (default Lifeguard/PgBouncer)
  LIFEGUARD_METRICS_SERVICE      the ``Service`` dimension the alarms use (default pgbouncer)
  LIFEGUARD_METRICS_INTERVAL     seconds between samples (default 15)
  POOLER_TLS_CERT                the certificate PgBouncer serves (public, as PgBouncer gets it);
                                 when set, every sample also publishes CertificateDaysLeft
  ECS_CONTAINER_METADATA_URI_V4  set by ECS; the task id becomes the ``Task`` dimension
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from pgbouncer.contract import (
    CERT_ENV,
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    LISTEN_PORT,
    METRICS_CREDENTIALS_ENV,
    METRICS_HOST_ENV,
    METRICS_INTERVAL_ENV,
    METRICS_NAMESPACE_ENV,
    METRICS_PORT_ENV,
    METRICS_SERVICE_ENV,
    METRICS_USER_ENV,
    SETTINGS_ENV,
)
from pgbouncer.metrics.certificate import CertificateReadError, days_left, not_after
from pgbouncer.metrics.console import Clock, ConsoleError, ConsoleTarget, sample_console
from pgbouncer.metrics.emf import EmfError, certificate_record, down_record, dumps, sample_records
from pgbouncer.metrics.rates import RateTracker
from pgbouncer.settings import PoolerSettings, SettingsError

ENV_ECS_METADATA = "ECS_CONTAINER_METADATA_URI_V4"

DEFAULT_INTERVAL_S = 15.0
PREFIX = "lifeguard-metrics"


class PublisherConfigError(ValueError):
    """The sidecar's environment is wrong; the message names the variable to change."""


@dataclass(frozen=True)
class PublisherConfig:
    target: ConsoleTarget
    namespace: str = DEFAULT_NAMESPACE
    service: str = DEFAULT_SERVICE
    interval_s: float = DEFAULT_INTERVAL_S
    certificate_expiry: dt.datetime | None = None
    """The end of validity of the certificate PgBouncer serves (``POOLER_TLS_CERT``), when it has one."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise PublisherConfigError(
                f"{METRICS_INTERVAL_ENV} must be a positive number of seconds, got {self.interval_s}"
            )
        if not self.namespace or self.namespace.startswith("AWS/"):
            raise PublisherConfigError(f"{METRICS_NAMESPACE_ENV} must be set and must not start with 'AWS/'")
        if not self.service:
            raise PublisherConfigError(f"{METRICS_SERVICE_ENV} must not be empty")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PublisherConfig:
        host, port = "/tmp", LISTEN_PORT  # noqa: S108 - PoolerSettings' default unix_socket_dir
        if env.get(SETTINGS_ENV):
            try:
                settings = PoolerSettings.from_json(env[SETTINGS_ENV])
            except SettingsError as exc:
                raise PublisherConfigError(f"{SETTINGS_ENV}: {exc}") from None
            if not settings.unix_socket_dir and not env.get(METRICS_HOST_ENV):
                raise PublisherConfigError(
                    f"the pooler settings have no unix_socket_dir, so PgBouncer opens no socket: set one, "
                    f"or set {METRICS_HOST_ENV} to reach the console over TCP"
                )
            host, port = settings.unix_socket_dir or host, settings.listen_port
        host = env.get(METRICS_HOST_ENV) or host
        if env.get(METRICS_PORT_ENV):
            try:
                port = int(env[METRICS_PORT_ENV])
            except ValueError:
                raise PublisherConfigError(
                    f"{METRICS_PORT_ENV} must be a port number, got {env[METRICS_PORT_ENV]!r}"
                ) from None
        user, password = _credentials(env)
        try:
            interval = float(env.get(METRICS_INTERVAL_ENV) or DEFAULT_INTERVAL_S)
        except ValueError:
            raise PublisherConfigError(
                f"{METRICS_INTERVAL_ENV} must be a number of seconds, got {env[METRICS_INTERVAL_ENV]!r}"
            ) from None
        try:
            target = ConsoleTarget(host=host, port=port, user=user, password=password)
        except ValueError as exc:
            raise PublisherConfigError(str(exc)) from None
        expiry = None
        if env.get(CERT_ENV):
            try:
                expiry = not_after(env[CERT_ENV])
            except CertificateReadError as exc:
                raise PublisherConfigError(str(exc)) from None
        return cls(
            target=target,
            namespace=env.get(METRICS_NAMESPACE_ENV) or DEFAULT_NAMESPACE,
            service=env.get(METRICS_SERVICE_ENV) or DEFAULT_SERVICE,
            interval_s=interval,
            certificate_expiry=expiry,
        )


def _credentials(env: Mapping[str, str]) -> tuple[str, str | None]:
    raw = env.get(METRICS_CREDENTIALS_ENV)
    if raw:
        if env.get(METRICS_USER_ENV):
            raise PublisherConfigError(f"set {METRICS_CREDENTIALS_ENV} or {METRICS_USER_ENV}, not both")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            # Never echo the value: it holds the password.
            raise PublisherConfigError(
                f"{METRICS_CREDENTIALS_ENV} is not JSON; expected {{\"username\": ..., \"password\": ...}}"
            ) from None
        if not (isinstance(data, dict) and isinstance(data.get("username"), str)
                and isinstance(data.get("password"), str) and data["username"] and data["password"]):
            raise PublisherConfigError(
                f"{METRICS_CREDENTIALS_ENV} must be a JSON object with non-empty 'username' and 'password'"
            )
        return data["username"], data["password"]
    if env.get(METRICS_USER_ENV):
        return env[METRICS_USER_ENV], None
    raise PublisherConfigError(
        f"set {METRICS_CREDENTIALS_ENV} (a stats_users user and its password) or {METRICS_USER_ENV} (a user that needs "
        "no password, e.g. 'pgbouncer' over the socket under PgBouncer's uid)"
    )


def task_identity(env: Mapping[str, str], timeout: float = 2.0) -> str:
    """The ECS task id (the last part of the task ARN), else this host's name.

    Read once at start from the task metadata endpoint v4 (``$ECS_CONTAINER_METADATA_URI_V4/task``);
    a failure there is not fatal, the hostname (the task's ENI name on Fargate) still tells tasks apart.
    """
    uri = env.get(ENV_ECS_METADATA)
    if uri:
        if not uri.startswith(("http://", "https://")):
            raise PublisherConfigError(f"{ENV_ECS_METADATA} is not an http URL")
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/task", timeout=timeout) as response:  # noqa: S310
                arn = json.loads(response.read().decode())["TaskARN"]
            task_id = str(arn).rsplit("/", 1)[-1]
            if task_id:
                return task_id
        except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as exc:
            print(f"{PREFIX}: no task id from the ECS metadata endpoint ({type(exc).__name__}); "
                  "using the hostname", file=sys.stderr, flush=True)
    return socket.gethostname() or "unknown"


class Publisher:
    """Samples the console and writes EMF lines; failures are reported once per outage."""

    def __init__(self, config: PublisherConfig, task: str, out: TextIO, err: TextIO, clock: Clock = time) -> None:
        self.config = config
        self.task = task
        self.out = out
        self.err = err
        self.clock = clock
        self.rates = RateTracker()
        self.failures = 0
        """Consecutive failed samples (0 while the console answers)."""

    def publish_once(self) -> bool:
        """Take one sample and print its records; False when the console could not be read.

        The certificate's days left go out either way: they do not depend on the console.
        """
        cfg = self.config
        if cfg.certificate_expiry is not None:
            now = self.clock.time()
            self._emit([certificate_record(
                namespace=cfg.namespace, service=cfg.service, task=self.task,
                days_left=days_left(cfg.certificate_expiry, dt.datetime.fromtimestamp(now, dt.UTC)),
                timestamp_ms=int(now * 1000),
            )])
        try:
            sample = sample_console(cfg.target, self.clock)
        except ConsoleError as exc:
            if self.failures == 0:
                self.log(f"cannot read the console, retrying every {cfg.interval_s:g} s: {exc}")
            self.failures += 1
            # PgBouncer may be restarting: its counters start again from zero.
            self.rates.reset()
            self._emit([down_record(namespace=cfg.namespace, service=cfg.service, task=self.task,
                                    timestamp_ms=int(self.clock.time() * 1000))])
            return False
        if self.failures:
            self.log(f"console at {cfg.target.where} answers again after {self.failures} failed sample(s)")
            self.failures = 0
        rates = self.rates.update(sample)
        self._emit(sample_records(sample, rates, namespace=cfg.namespace, service=cfg.service, task=self.task))
        return True

    def run(self, stop: threading.Event, max_samples: int | None = None) -> None:
        """Sample every interval (measured start to start) until ``stop`` is set."""
        taken = 0
        next_at = self.clock.monotonic()
        while not stop.is_set() and (max_samples is None or taken < max_samples):
            try:
                self.publish_once()
            except EmfError as exc:
                # A figure CloudWatch would reject; skip this sample rather than stop publishing.
                self.log(f"skipped a sample: {exc}")
            taken += 1
            next_at += self.config.interval_s
            now = self.clock.monotonic()
            if next_at < now:  # we fell behind (a slow console): do not burst to catch up
                next_at = now
            stop.wait(max(next_at - now, 0.0))

    def _emit(self, records: Sequence[Mapping[str, object]]) -> None:
        self.out.write("".join(dumps(rec) + "\n" for rec in records))
        self.out.flush()

    def log(self, message: str) -> None:
        print(f"{PREFIX}: {message}", file=self.err, flush=True)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgbouncer.metrics",
        description="Publish PgBouncer pool metrics as CloudWatch EMF lines on stdout.",
    )
    parser.add_argument("--once", action="store_true", help="take one sample and exit (1 if it failed)")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        config = PublisherConfig.from_env(env)
        task = task_identity(env)
    except PublisherConfigError as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 2
    publisher = Publisher(config, task, sys.stdout, sys.stderr)
    if args.once:
        return 0 if publisher.publish_once() else 1
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    publisher.log(
        f"publishing {config.namespace} for {config.service}/{task} every {config.interval_s:g} s "
        f"from {config.target.where} as {config.target.user}"
    )
    publisher.run(stop)
    return 0
