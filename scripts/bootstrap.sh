#!/usr/bin/env bash
# Set up what lifeguard needs on a fresh Debian/Ubuntu machine, idempotently: a virtualenv at .venv
# holding exactly what uv.lock pins (hash-checked) for one use, and nothing else.
#   local      (default) the local stack, demo and benchmarks (`lifeguard local|demo|bench`): the base
#              install and the `local` extra; also the Debian packages postgresql and pgbouncer (Debian
#              12's 1.18, which the suite also tests against) and the shipped PgBouncer binary,
#              installed once with its Debian 13 libraries (scripts/install-pgbouncer.sh)
#   dev        everything, for scripts/test: every extra and the dev group, and those Debian packages
#   pipeline   the base install only: `lifeguard migrate` and `lifeguard smoke` (deploy.yml)
#   infra      the base install and the `infra` extra: the Pulumi program (`pulumi preview`, `pulumi up`)
# This never changes uv.lock, and stops when pyproject.toml and uv.lock disagree: scripts/relock
# changes what is pinned. UV_PROJECT_ENVIRONMENT=DIR installs into DIR instead of .venv.
# Usage: scripts/bootstrap.sh [local|dev|pipeline|infra]
set -euo pipefail
cd "$(dirname "$0")/.."

use=${1:-local}
case "$use" in
    local) sync=(--no-dev --extra local) ;;
    dev | --dev) use=dev; sync=(--all-extras) ;;
    pipeline) sync=(--no-dev) ;;
    infra) sync=(--no-dev --extra infra) ;;
    *) echo "usage: scripts/bootstrap.sh [local|dev|pipeline|infra] (got: $1)" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "lifeguard needs Python 3.11 or newer (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

need_apt=()
# scripts/uv installs uv with pip in a virtualenv of its own; Debian's Python needs python3-venv for that.
if [ ! -x .tools/uv/bin/uv ] && ! "$python" -c 'import ensurepip' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
if [ "$use" = local ] || [ "$use" = dev ]; then
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "==> installing Debian packages: ${need_apt[*]}"
    if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
        # The kit runs its own clusters on free ports: no system-wide cluster on 5432 is wanted. Said in a
        # drop-in that the packaged createcluster.conf includes (include_dir createcluster.d), so that file,
        # a conffile with the machine's other cluster defaults, stays as the package and its admin left it.
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/lifeguard.conf >/dev/null
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ "$use" = local ] || [ "$use" = dev ]; then
    scripts/install-pgbouncer.sh
fi

echo "==> ${UV_PROJECT_ENVIRONMENT:-.venv}: lifeguard for $use, as uv.lock pins it"
# --locked: install the lock as it is, and fail (rather than re-resolve) when pyproject.toml changed
# without a relock. Exact sync: whatever the lock does not list for this use is removed.
PYTHON="$python" scripts/uv sync --locked --quiet "${sync[@]}"
