#!/usr/bin/env bash
# tests/boot/fetch-armhf.sh CACHE_DIR: downloads the Debian bookworm armhf
# packages the QEMU boot test needs (the armmp kernel, resolved through its
# metapackage, busybox-static and e2fsck-static) into CACHE_DIR/debs, and
# unpacks them into CACHE_DIR/root.
#
# It uses its own apt configuration limited to bookworm main for armhf:
# the host's dpkg never gets a foreign architecture, and a broken
# bookworm-security armhf index cannot fail the run. Idempotent: packages
# already unpacked are not fetched again.
set -euo pipefail
cache=${1:?usage: fetch-armhf.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(realpath "$cache")
mirror=${POCOBELLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$cache/root/.complete" ]; then
  echo "fetch-armhf: cached in $cache"
  exit 0
fi

mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$cache/root"
echo "deb [arch=armhf] $mirror bookworm main" >"$cache/apt/sources.list"
touch "$cache/apt/status"
apt_opts=(
  -o APT::Architecture=armhf
  -o APT::Architectures=armhf
  -o Dir::State="$cache/apt"
  -o Dir::State::Lists="$cache/apt/lists"
  -o Dir::State::status="$cache/apt/status"
  -o Dir::Etc::SourceList="$cache/apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Cache="$cache/apt/cache"
  -o Debug::NoLocking=1
)
apt-get "${apt_opts[@]}" -q update >/dev/null

# The kernel package carries an ABI number that changes: ask the
# metapackage which one it depends on.
kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-armmp |
  sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-armmp\)$/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
  echo "fetch-armhf: cannot resolve linux-image-armmp to a versioned kernel" >&2
  exit 1
fi
echo "fetch-armhf: kernel package $kpkg"
(cd "$cache/debs" && apt-get "${apt_opts[@]}" -q download "$kpkg" busybox-static e2fsck-static >/dev/null)
for deb in "$cache"/debs/*.deb; do
  dpkg-deb -x "$deb" "$cache/root"
done
echo "$kpkg" >"$cache/root/.kernel-package"
touch "$cache/root/.complete"
echo "fetch-armhf: unpacked into $cache/root"
