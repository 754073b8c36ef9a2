#!/usr/bin/env bash
# scripts/fetch-debs.sh CACHE_DIR DEB_ARCH KERNEL_META [PACKAGE...]:
# downloads Debian bookworm packages of one foreign architecture (armhf or
# armel) into CACHE_DIR/debs and unpacks them into CACHE_DIR/root, never
# installing anything on the host. KERNEL_META is a kernel metapackage
# (linux-image-armmp, linux-image-marvell): the versioned kernel it
# depends on is fetched. The image builder and the QEMU boot test share
# one cache per architecture and kernel, so a package is downloaded once.
#
# It uses its own apt configuration limited to bookworm main for that
# architecture: the host's dpkg never gets a foreign architecture (which
# breaks `apt-get update` on these machines). Idempotent: when the cache
# holds the same package list, nothing is fetched again.
set -euo pipefail
usage="usage: fetch-debs.sh CACHE_DIR DEB_ARCH KERNEL_META [PACKAGE...]"
cache=${1:?$usage}
arch=${2:?$usage}
kmeta=${3:?$usage}
shift 3
pkgs=("$@")
mkdir -p "$cache"
cache=$(realpath "$cache")
mirror=${POCOBELLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
want="$arch $kmeta ${pkgs[*]}"

# The image builder and the boot test may ask for one cache at once (make
# test-boots runs them side by side): one fetches, the other waits.
exec 9>"$cache/.lock"
flock 9
if [ -f "$cache/root/.complete" ] && [ "$(cat "$cache/root/.complete")" = "$want" ]; then
  echo "fetch-debs: $arch packages cached in $cache"
  exit 0
fi
rm -rf "$cache/root" "$cache/debs"
mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$cache/root"
echo "deb [arch=$arch] $mirror bookworm main" >"$cache/apt/sources.list"
touch "$cache/apt/status"
apt_opts=(
  -o APT::Architecture="$arch"
  -o APT::Architectures="$arch"
  -o Dir::State="$cache/apt"
  -o Dir::State::Lists="$cache/apt/lists"
  -o Dir::State::status="$cache/apt/status"
  -o Dir::Etc::SourceList="$cache/apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Cache="$cache/apt/cache"
  -o Debug::NoLocking=1
  -o APT::Sandbox::User=root
)
apt-get "${apt_opts[@]}" -q update >/dev/null

# The kernel package carries an ABI number that changes: ask the
# metapackage which one it depends on.
kpkg=$(apt-cache "${apt_opts[@]}" depends "$kmeta" |
  sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
  echo "fetch-debs: cannot resolve $kmeta to a versioned kernel" >&2
  exit 1
fi
echo "fetch-debs: $arch kernel package $kpkg, with ${pkgs[*]}"
(cd "$cache/debs" && apt-get "${apt_opts[@]}" -q download "$kpkg" "${pkgs[@]}" >/dev/null)
for deb in "$cache"/debs/*.deb; do
  dpkg-deb -x "$deb" "$cache/root"
done
# modules.dep is written by depmod at install time, not shipped in the
# package: made here once for the unpacked tree.
kver=$(basename "$(ls -d "$cache"/root/lib/modules/*/ | head -n1)")
depmod -b "$cache/root" "$kver"
echo "$kpkg" >"$cache/root/.kernel-package"
echo "$want" >"$cache/root/.complete"
echo "fetch-debs: unpacked into $cache/root"
