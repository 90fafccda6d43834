#!/usr/bin/env bash
# Build the PgBouncer the image ships (pgbouncer.versions.PINNED) from Debian 13's source package,
# with Debian's patches applied (its security fixes are patches), once, into a cache shared by every
# clone: see lifeguard/stack/pgbouncer_build.py for the path (/var/cache/lifeguard for root,
# ~/.cache/lifeguard otherwise, $LIFEGUARD_CACHE_DIR to choose). The local stack, the demo, the
# benchmarks and the tests run that binary.
#
# The source comes through this machine's configured Debian mirror (read from the system's apt
# sources, never changed): apt gets a sources list, package lists and cache of its own for the fetch.
# Build dependencies missing from the machine are installed with apt.
# Usage: scripts/build-pgbouncer.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(PYTHONPATH=. "${PYTHON:-python3}" -m lifeguard.stack.pgbouncer_build)"
binary="$build_dir/bin/pgbouncer"
if [ "${1:-}" != "--force" ] && [ -x "$binary" ] && "$binary" --version 2>/dev/null | head -n1 | grep -qxF "PgBouncer $release"; then
    exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

cache=$(dirname "$build_dir")
mkdir -p "$cache"
chmod 755 "$cache"
# Several clones (or helpers) may bootstrap at once: one builds, the others wait and reuse it.
exec 9>"$cache/.pgbouncer-build.lock"
flock 9
if [ "${1:-}" != "--force" ] && [ -x "$binary" ] && "$binary" --version 2>/dev/null | head -n1 | grep -qxF "PgBouncer $release"; then
    exit 0
fi

# The Debian mirror this machine already uses: deb822 sources first, then the one-line format.
mirror=""
for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$file")
    [ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { if ($i !~ /security/) print $i; break } }' \
        | head -n1)
fi
if [ -z "$mirror" ]; then
    echo "build-pgbouncer: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
    exit 1
fi

need=()
for pkg in build-essential dpkg-dev pkg-config libevent-dev libssl-dev libc-ares-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "==> installing PgBouncer build dependencies: ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "==> building PgBouncer $release from Debian $suite's source package pgbouncer=$package_version"
work=$(mktemp -d "$cache/.pgbouncer-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
# As root apt downloads as the _apt user, into the current directory for `source`.
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work/src"; fi
echo "deb-src $mirror $suite main" > "$work/apt/sources.list"
apt_opts=(
    -o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=-
    -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache"
)
apt-get "${apt_opts[@]}" -qq update
# apt-get source unpacks with dpkg-source -x, which applies debian/patches (the CVE fixes).
(cd "$work/src" && apt-get "${apt_opts[@]}" -qq source "pgbouncer=$package_version" >/dev/null)
src="$work/src/pgbouncer-$release"
grep -q "^pgbouncer ($package_version)" "$src/debian/changelog" || {
    echo "build-pgbouncer: the unpacked source is not pgbouncer $package_version" >&2
    exit 1
}
(cd "$src" && ./configure -q --prefix="$build_dir" --with-cares >/dev/null && make -s -j"$(nproc)" >/dev/null)
version_line=$("$src/pgbouncer" --version | head -n1)
if [ "$version_line" != "PgBouncer $release" ]; then
    echo "build-pgbouncer: built '$version_line', expected 'PgBouncer $release'" >&2
    exit 1
fi

staged="$work/out"
mkdir -p "$staged/bin"
install -m 755 "$src/pgbouncer" "$staged/bin/pgbouncer"
cp "$src/debian/changelog" "$staged/debian-changelog"  # which patches (CVEs) this build carries
chmod -R a+rX "$staged"
rm -rf "$build_dir"
mv "$staged" "$build_dir"
echo "==> PgBouncer $release ready: $binary"
