"""What the benchmark ran on: hardware, software versions, and how busy the machine already was."""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from lifeguard.stack.pooler import installed_version
from lifeguard.stack.system import find_postgres_bin


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _postgres_version() -> str:
    out = subprocess.run([str(find_postgres_bin() / "postgres"), "--version"], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip().removeprefix("postgres (PostgreSQL) ") or "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "postgres": _postgres_version(),
        "pgbouncer": str(installed_version()),
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "libpq": f"{psycopg.pq.version() // 10000}.{psycopg.pq.version() % 10000}",
        "openssl": ssl.OPENSSL_VERSION,
        "load_average_at_start": load_average(),
    }
