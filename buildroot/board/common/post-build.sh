#!/usr/bin/env bash
# board/common/post-build.sh TARGET_DIR BOARD: Buildroot's post-build
# script for every Pocobelle defconfig (BR2_ROOTFS_POST_SCRIPT_ARGS gives
# BOARD). It lays the root file system out as the project's image builder
# (scripts/image.sh) does, from the board's description
# (board/BOARD/board.conf in the project):
#   - /etc/pocobelle.toml is a link to /boot/pocobelle.toml (the FAT boot
#     partition, editable from any computer); the commented default from
#     rootfs-overlay/ stays as /etc/pocobelle.toml.example;
#   - /boot and /data exist (the root is mounted read-only);
#   - /etc/pocobelle-board names the board;
#   - of the kernel's modules, only those board.conf names (MODULES and
#     INITRAMFS_MODULES) and their dependencies are kept;
#   - /bin/pocobelle must be static and every applet link must reach it.
# It never touches anything outside TARGET_DIR.
set -euo pipefail
usage="usage: post-build.sh TARGET_DIR BOARD"
target=${1:?$usage}
board=${2:?$usage (set BR2_ROOTFS_POST_SCRIPT_ARGS to the board name)}
ext=${BR2_EXTERNAL_POCOBELLE_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}
repo=$(cd "$ext/.." && pwd)
conf="$repo/board/$board/board.conf"
die() { echo "pocobelle post-build: $*" >&2; exit 1; }
[ -f "$conf" ] || die "no board $board ($conf is missing)"
# shellcheck source=/dev/null
. "$conf"

# --- the binary and its links -------------------------------------------
[ -x "$target/bin/pocobelle" ] || die "/bin/pocobelle is missing (BR2_PACKAGE_POCOBELLE)"
readelf=$(ls "${HOST_DIR:-/nonexistent}"/bin/*-readelf 2>/dev/null | head -n1 || true)
if [ -n "$readelf" ]; then
  if "$readelf" -l "$target/bin/pocobelle" | grep -q 'Requesting program interpreter'; then
    die "/bin/pocobelle is dynamically linked; PID 1 must be static (+crt-static)"
  fi
fi
while read -r link; do
  [ "$(readlink "$target/$link")" = /bin/pocobelle ] || die "/$link does not link to /bin/pocobelle"
done < <(cd "$repo/rootfs-overlay" && find . -type l -lname /bin/pocobelle | sed 's|^\./||' | sort)

# --- files, as scripts/image.sh lays them out ---------------------------
rm -f "$target/README.md"   # rootfs-overlay's own README
mkdir -p "$target/boot" "$target/data"
if [ -f "$target/etc/pocobelle.toml" ] && [ ! -L "$target/etc/pocobelle.toml" ]; then
  mv -f "$target/etc/pocobelle.toml" "$target/etc/pocobelle.toml.example"
fi
ln -sfn /boot/pocobelle.toml "$target/etc/pocobelle.toml"
echo "$board" >"$target/etc/pocobelle-board"

# --- kernel modules -------------------------------------------------------
kdir=$(ls -d "$target"/lib/modules/*/ 2>/dev/null | head -n1 || true)
if [ -z "$kdir" ]; then
  echo "pocobelle post-build: the kernel has no modules: everything board.conf names must be built in" >&2
  exit 0
fi
moddir=${kdir%/}
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep is missing (depmod did not run)"
touch "$moddir/modules.builtin"
# modules NAME...: the files (paths under $moddir) that load NAME,
# dependencies first; built-in modules are skipped; an unknown name fails
# (the same rules as scripts/image.sh).
modules() {
  local m line seen=" "
  add() {
    local p=$1 deps dep
    case "$seen" in *" $p "*) return ;; esac
    deps=$(grep -E "^$p:" "$moddir/modules.dep" | cut -d: -f2)
    for dep in $(echo "$deps" | tr ' ' '\n' | tac); do add "$dep"; done
    seen="$seen$p "
    echo "$p"
  }
  for m in "$@"; do
    line=$(grep -E "(^|/)$(echo "$m" | sed 's/[-_]/[-_]/g')\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 || true)
    if [ -z "$line" ]; then
      grep -qE "/$(echo "$m" | sed 's/[-_]/[-_]/g')\.ko$" "$moddir/modules.builtin" && continue
      die "module $m (board.conf) is neither a module nor built in: add it to the kernel fragment"
    fi
    add "${line%%:*}"
  done
}
# shellcheck disable=SC2086 # word lists
keep=$( { modules $MODULES; modules $INITRAMFS_MODULES; } | sort -u)
(cd "$moddir" && find . -name '*.ko*' | sed 's|^\./||') | sort | while read -r f; do
  grep -qxF "$f" <<<"$keep" || rm -f "$moddir/$f"
done
find "$moddir" -mindepth 1 -type d -empty -delete
echo "pocobelle post-build: $board: kept $(grep -c . <<<"$keep" || true) kernel modules"
