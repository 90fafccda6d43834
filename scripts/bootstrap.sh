#!/usr/bin/env bash
# Set up everything lifeguard needs on a fresh Debian/Ubuntu machine, idempotently:
#   - Debian packages: postgresql (the local RDS stand-in) and pgbouncer (Debian 12's 1.18, which
#     the suite also tests against);
#   - the shipped PgBouncer release, built once from Debian 13's source (scripts/build-pgbouncer.sh);
#   - a virtualenv at .venv with the kit installed (editable), plus test tools when asked.
# Usage: scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "==> installing Debian packages: ${need_apt[*]}"
    # The kit runs its own clusters on free ports: no system-wide cluster on 5432 is wanted.
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

scripts/build-pgbouncer.sh

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "lifeguard needs Python 3.11 or newer (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$python" -m venv .venv
fi
# Reinstall only when pyproject.toml or the wanted extras changed.
stamp=".venv/.lifeguard-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras}"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$want" "$stamp"; then
    echo "==> installing lifeguard${extras} into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extras}"
    printf '%s\n' "$want" > "$stamp"
fi
