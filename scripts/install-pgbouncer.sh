#!/usr/bin/env bash
# Install the PgBouncer the image ships (pgbouncer.versions.SHIPPED_PACKAGE: Debian forky's binary
# package of 1.26.1, pinned by SHA256) once, into a cache shared by every clone: see
# lifeguard/stack/pgbouncer_install.py for the path (/var/cache/lifeguard for root, ~/.cache/lifeguard
# otherwise, $LIFEGUARD_CACHE_DIR to choose) and for how it runs. The local stack, the demo, the
# benchmarks and the tests run that binary.
#
# The .deb comes from this machine's Debian mirror (read from the system's apt sources, never
# changed) and is refused unless its SHA256 is the pinned one. It is installed with apt into a
# throwaway Debian 13 root (debootstrap), so it gets Debian 13's dependencies only, exactly as in the
# image; the binary, the Debian 13 libraries it loads and Debian 13's loader are kept, the root is
# not. debootstrap is installed with apt when missing. Needs root or sudo (debootstrap, chroot).
# Usage: scripts/install-pgbouncer.sh [shipped|debian13] [--force]
#   debian13: Debian 13's own 1.24.1-1+deb13u2 binary, for the benchmarks' before/after comparison only.
set -euo pipefail
cd "$(dirname "$0")/.."

which=shipped
force=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        shipped | debian13) which=$arg ;;
        *) echo "usage: scripts/install-pgbouncer.sh [shipped|debian13] [--force]" >&2; exit 2 ;;
    esac
done

py() { PYTHONPATH=. "${PYTHON:-python3}" "$@"; }
eval "$(py -m lifeguard.stack.pgbouncer_install vars "$which")"
# Fast path: already installed, and the binary is still the .deb's, byte for byte.
if [ -z "$force" ] && py -m lifeguard.stack.pgbouncer_install check "$which" 2>/dev/null; then
    exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

cache=$(dirname "$install_dir")
mkdir -p "$cache"
chmod 755 "$cache"
# Several clones (or helpers) may bootstrap at once: one installs, the others wait and reuse it.
exec 9>"$cache/.pgbouncer-install.lock"
flock 9
if [ -z "$force" ] && py -m lifeguard.stack.pgbouncer_install check "$which" 2>/dev/null; then
    exit 0
fi

# /usr/sbin is not on every user's PATH: look there too before installing it.
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
    echo "==> installing debootstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

echo "==> installing PgBouncer $release (Debian package $package_version) into $install_dir"
work=$(mktemp -d "$cache/.pgbouncer-install.XXXXXX")
chmod 755 "$work"
trap 'as_root rm -rf "$work"' EXIT
py -m pgbouncer.debian_package fetch --package "$which" --arch "$arch" --out "$work/$deb_name"
mirror=$(py -m pgbouncer.debian_package mirror)
root="$work/root"
as_root debootstrap --variant=minbase trixie "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    exit 1
}
# No service starts inside the throwaway root (the package's postinst asks for one).
printf '#!/bin/sh\nexit 101\n' | as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
as_root chmod 755 "$root/usr/sbin/policy-rc.d"
as_root cp "$work/$deb_name" "$root/tmp/$deb_name"
# The root's only apt source is Debian 13 (what debootstrap wrote): the dependencies come from there.
as_root chroot "$root" apt-get update -qq
as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "/tmp/$deb_name" >"$work/apt.log" 2>&1 || {
    tail -n 20 "$work/apt.log" >&2
    exit 1
}

staged="$work/out"
mkdir -p "$staged/bin" "$staged/sbin" "$staged/lib"
cp "$work/$deb_name" "$staged/"
cp "$root/usr/sbin/pgbouncer" "$staged/sbin/pgbouncer"
libdir="$root/usr/lib/$triplet"
cp -L "$libdir/$loader" "$staged/lib/$loader"
# Exactly the libraries the binary loads, as Debian 13's loader resolves them in that root.
"$libdir/$loader" --inhibit-cache --library-path "$libdir" --list "$root/usr/sbin/pgbouncer" \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | while read -r lib; do cp -L "$lib" "$staged/lib/"; done
ln -s "../lib/$loader" "$staged/bin/pgbouncer"
chmod -R a+rX,go-w "$staged"
py -m lifeguard.stack.pgbouncer_install check "$which" --dir "$staged"
version_line=$("$staged/bin/pgbouncer" --inhibit-cache --library-path "$staged/lib" "$staged/sbin/pgbouncer" --version | head -n1)
if [ "$version_line" != "PgBouncer $release" ]; then
    echo "install-pgbouncer: the installed binary says '$version_line', expected 'PgBouncer $release'" >&2
    exit 1
fi
rm -rf "$install_dir"
mv "$staged" "$install_dir"
echo "==> $version_line ready: $install_dir/sbin/pgbouncer (run through Debian 13's loader, $install_dir/bin/pgbouncer)"
