#!/usr/bin/env bash
# scripts/image.sh BOARD [OUT_DIR]: builds the flashable image of one board
# (board/BOARD/board.conf) from the ARM binary in out/<arch>/pocobelle:
#   OUT_DIR/pocobelle-BOARD.img    MBR disk image: 4 MiB free for a board's
#                                  own boot loader, then
#     1 FAT16 "POCOBOOT" (bootable): kernel, initramfs, device trees, boot
#       script or extlinux.conf, pocobelle.toml (edit it from any computer)
#     2 ext4 "pocoroot", read-only at run time: the binary and its links,
#       rootfs-overlay/, the board's kernel modules, BusyBox, static
#       e2fsck, Debian's CA bundle
#     3 ext4 "pocodata": spool, DNS snapshot, swap file, log
#   OUT_DIR/pocobelle-BOARD.bmap   bmaptool's block map (mapped ranges and
#                                  their SHA-256), for `pocobelle flash`
#   OUT_DIR/SHA256SUMS
# OUT_DIR defaults to out/BOARD. No root and no loop mount: file systems
# are made from directories (mkfs.ext4 -d, mtools), the partition table
# with sfdisk on the file, under fakeroot when not root. Reproducible: all
# times come from SOURCE_DATE_EPOCH (default: the last commit's time), and
# UUIDs, volume IDs and hash seeds are derived from the board name, so two
# builds of one commit are byte-identical (tests/image/structure.sh checks).
set -euo pipefail
usage="usage: image.sh BOARD [OUT_DIR]"
board=${1:?$usage}
repo=$(cd "$(dirname "$0")/.." && pwd)
conf="$repo/board/$board/board.conf"
[ -f "$conf" ] || { echo "image: no board $board (no $conf)" >&2; exit 1; }
out=$(realpath -m "${2:-$repo/out/$board}")

if [ "$(id -u)" != 0 ] && [ -z "${FAKEROOTKEY:-}" ]; then
  exec fakeroot -- bash "$0" "$@"
fi

# shellcheck source=/dev/null
. "$conf"
bin="$repo/out/$BOARD_ARCH/pocobelle"
[ -x "$bin" ] || { echo "image: $bin is missing (make $BOARD_ARCH)" >&2; exit 1; }
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH=$epoch
export E2FSPROGS_FAKE_TIME=$epoch
export LC_ALL=C TZ=UTC
umask 022

# Deterministic identifiers: a hash of the board and the purpose.
hex() { printf '%s' "pocobelle:$board:$1" | sha256sum | cut -c1-"$2"; }
uuid() { local h; h=$(hex "$1" 32); echo "${h:0:8}-${h:8:4}-4${h:13:3}-a${h:17:3}-${h:20:12}"; }

# shellcheck source=board/common/debs.sh
. "$repo/board/common/debs.sh"
cache="$repo/target/debs/$DEB_ARCH-${KERNEL_PKG#linux-image-}"
# shellcheck disable=SC2086 # word lists
bash "$repo/scripts/fetch-debs.sh" "$cache" "$DEB_ARCH" "$KERNEL_PKG" $BASE_DEBS $NUT_DEBS >&2
deb="$cache/root"
kver=$(basename "$(ls -d "$deb"/lib/modules/*/ | head -n1)")
moddir="$deb/lib/modules/$kver"

work="$repo/target/image/$board"
rm -rf "$work"
mkdir -p "$work" "$out"

# modules NAME...: the module files (paths under $moddir) that load NAME,
# dependencies first, each once; built-in modules are skipped.
modules() {
  local m line f d seen=" "
  add() { # PATH: its dependencies first
    local p=$1 deps dep
    case "$seen" in *" $p "*) return ;; esac
    deps=$(grep -E "^$p:" "$moddir/modules.dep" | cut -d: -f2)
    for dep in $(echo "$deps" | tr ' ' '\n' | tac); do add "$dep"; done
    seen="$seen$p "
    echo "$p"
  }
  for m in "$@"; do
    # modules.dep names files with - or _ as the source has them.
    line=$(grep -E "(^|/)$(echo "$m" | sed 's/[-_]/[-_]/g')\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 || true)
    if [ -z "$line" ]; then
      if grep -qE "/$(echo "$m" | sed 's/[-_]/[-_]/g')\.ko$" "$moddir/modules.builtin"; then continue; fi
      echo "image: module $m is not in $kver" >&2; return 1
    fi
    f=${line%%:*}
    add "$f"
  done
}
copy_modules() { # DEST_ROOT LIST_FILE: the listed module files under DEST_ROOT/lib/modules/$kver
  local f
  while read -r f; do
    mkdir -p "$1/lib/modules/$kver/$(dirname "$f")"
    cp "$moddir/$f" "$1/lib/modules/$kver/$f"
  done <"$2"
}

# --- root file system --------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,etc/ssl/certs,proc,sys,dev,run,tmp,data,boot,root,usr/bin,usr/sbin,lib/modules/"$kver"}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp -a "$repo/rootfs-overlay/." "$root/"
rm -f "$root/README.md"
mv "$root/etc/pocobelle.toml" "$root/etc/pocobelle.toml.example"
ln -s /boot/pocobelle.toml "$root/etc/pocobelle.toml"
install -m 0755 "$bin" "$root/bin/pocobelle"
install -m 0755 "$deb/bin/busybox" "$root/bin/busybox"
install -m 0755 "$deb/sbin/e2fsck.static" "$root/sbin/e2fsck"
# BusyBox's applets as links in /bin, but never over a file already there
# (pocobelle's init, poweroff, reboot, halt, sendmail, mailq).
qemu=$([ "$DEB_ARCH" = armel ] && echo "qemu-arm-static -cpu arm926" || echo "qemu-arm-static -cpu cortex-a7")
for a in $($qemu "$deb/bin/busybox" --list); do
  case "$a" in busybox|init|linuxrc|poweroff|reboot|halt) continue ;; esac
  for d in bin sbin usr/bin usr/sbin; do [ -e "$root/$d/$a" ] || [ -L "$root/$d/$a" ] && continue 2; done
  ln -s busybox "$root/bin/$a"
done
ln -s /bin/busybox "$root/sbin/udhcpc"
# Network UPS Tools: the drivers of NUT_DRIVERS and upsd, at Debian's
# paths, with the shared libraries they load (symbolic links kept as
# links). Run only when [ups] mode is "local".
copy_from_deb() {
  local f=$1 t
  while [ -L "$deb/$f" ]; do
    t=$(readlink "$deb/$f")
    mkdir -p "$root/$(dirname "$f")"
    [ -e "$root/$f" ] || [ -L "$root/$f" ] || ln -s "$t" "$root/$f"
    case "$t" in /*) f=${t#/} ;; *) f=$(dirname "$f")/$t ;; esac
  done
  mkdir -p "$root/$(dirname "$f")"
  [ -e "$root/$f" ] || cp -p "$deb/$f" "$root/$f"
}
nut=(lib/nut/upsd)
for d in $NUT_DRIVERS; do nut+=("lib/nut/$d"); done
closure=$(bash "$repo/scripts/elf-closure.sh" "$deb" "${nut[@]}")
for f in "${nut[@]}" $closure; do copy_from_deb "$f"; done
# The CA bundle as update-ca-certificates writes it: every certificate of
# the package, in name order.
find "$deb/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat >"$root/etc/ssl/certs/ca-certificates.crt"
modules $MODULES >"$work/root-modules.list"
copy_modules "$root" "$work/root-modules.list"
cp "$moddir/modules.dep" "$moddir/modules.builtin" "$root/lib/modules/$kver/"
echo "$board" >"$root/etc/pocobelle-board"

# --- initramfs -----------------------------------------------------------
ird="$work/initramfs"
mkdir -p "$ird"/{bin,etc,proc,sys,dev,newroot,lib/modules/"$kver"}
install -m 0755 "$deb/bin/busybox" "$ird/bin/busybox"
for a in sh mount umount switch_root insmod mkdir sleep cat ln findfs setsid cttyhack reboot ls; do
  ln -s busybox "$ird/bin/$a"
done
install -m 0755 "$repo/board/common/initramfs-init" "$ird/init"
modules $INITRAMFS_MODULES >"$work/initramfs-modules.list"
copy_modules "$ird" "$work/initramfs-modules.list"
sed "s|^|$kver/|" "$work/initramfs-modules.list" >"$ird/etc/modules"
mknod -m 0600 "$ird/dev/console" c 5 1

# --- boot partition ------------------------------------------------------
boot="$work/boot"
mkdir -p "$boot"
mods_toml=$(printf '"%s", ' $MODULES); mods_toml=${mods_toml%, }
sed -e "s|@BOARD@|$board|g" -e "s|@NET_IF@|$NET_IF|g" -e "s|@MODULES@|$mods_toml|g" \
  "$repo/board/common/pocobelle.toml" >"$boot/pocobelle.toml"
cmdline="console=$CONSOLE root=LABEL=pocoroot ro rootwait pocobelle.data=/dev/disk/by-label/pocodata $CMDLINE"
kernel="$deb/boot/vmlinuz-$kver"
clamp() { find "$1" -exec touch -h -d "@$epoch" {} +; }
cpio_gz() { # DIR OUT: a reproducible newc archive, gzip without name or time
  clamp "$1"
  (cd "$1" && find . | sort | cpio -o -H newc --reproducible --quiet | gzip -n -9) >"$2"
}
mkimage_q() { mkimage "$@" >/dev/null; }
case "$KERNEL_FORMAT" in
  zImage)
    cp "$kernel" "$boot/zImage"
    cpio_gz "$ird" "$boot/initrd.gz"
    ;;
  uImage)
    cat "$kernel" "$deb/usr/lib/linux-image-$kver/$DTB" >"$work/zImage+dtb"
    mkimage_q -A arm -O linux -T kernel -C none -a 0x00008000 -e 0x00008000 \
      -n "pocobelle $kver" -d "$work/zImage+dtb" "$boot/uImage"
    cpio_gz "$ird" "$work/initrd.gz"
    mkimage_q -A arm -O linux -T ramdisk -C gzip -a 0 -e 0 -n "pocobelle initramfs" \
      -d "$work/initrd.gz" "$boot/uInitrd"
    ;;
  *) echo "image: unknown KERNEL_FORMAT $KERNEL_FORMAT" >&2; exit 1 ;;
esac
if [ -n "$DTB_DIR" ]; then
  mkdir -p "$boot/$DTB_DIR"
  find "$deb/usr/lib/linux-image-$kver" -name '*.dtb' -exec cp {} "$boot/$DTB_DIR/" \;
fi
case "$BOOT_METHOD" in
  extlinux)
    mkdir -p "$boot/extlinux"
    cat >"$boot/extlinux/extlinux.conf" <<EOF
# Pocobelle ($board), read by U-Boot's distro boot.
default pocobelle
timeout 1
label pocobelle
  kernel /zImage
  initrd /initrd.gz
  fdtdir /$DTB_DIR
  append $cmdline
EOF
    ;;
  bootscr)
    if [ "$KERNEL_FORMAT" = uImage ]; then
      cat >"$boot/boot.cmd" <<EOF
# Pocobelle ($board): U-Boot script (compiled into boot.scr with mkimage).
# Old Marvell U-Boot: load from the first USB key's first partition.
setenv bootargs "$cmdline"
usb start
fatload usb 0:1 $LOAD_KERNEL uImage
fatload usb 0:1 $LOAD_INITRD uInitrd
bootm $LOAD_KERNEL $LOAD_INITRD
EOF
    else
      cat >"$boot/boot.cmd" <<EOF
# Pocobelle ($board): U-Boot script (compiled into boot.scr with mkimage),
# run by distro boot from the partition it found it on.
setenv bootargs "$cmdline"
load \${devtype} \${devnum}:\${distro_bootpart} $LOAD_KERNEL zImage
load \${devtype} \${devnum}:\${distro_bootpart} $LOAD_INITRD initrd.gz
bootz $LOAD_KERNEL $LOAD_INITRD:\${filesize} \${fdtcontroladdr}
EOF
    fi
    mkimage_q -A arm -O linux -T script -C none -n "pocobelle $board" -d "$boot/boot.cmd" "$boot/boot.scr"
    ;;
  *) echo "image: unknown BOOT_METHOD $BOOT_METHOD" >&2; exit 1 ;;
esac
cat >"$boot/README.txt" <<EOF
Pocobelle for $board: $BOARD_DESC
Edit pocobelle.toml here before the first boot; see the comments in it.
Kernel $kver (Debian bookworm), command line:
  $cmdline
EOF

# --- file systems and the disk -----------------------------------------
# pin_ctimes DIR IMAGE: mkfs.ext4 -d copies each file's ctime, which no
# one can set on the staging tree; debugfs pins them to the epoch.
pin_ctimes() {
  (cd "$1" && find . | sort | sed 's|^\.||; s|^$|/|') |
    while read -r p; do printf 'sif "%s" ctime @%s\nsif "%s" ctime_extra 0\n' "$p" "$epoch" "$p"; done \
    >"$2.debugfs"
  debugfs -w -f "$2.debugfs" "$2" >"$2.debugfs.log" 2>&1
  if grep -qvE '^debugfs [0-9.]+ \(|^debugfs: sif ' "$2.debugfs.log"; then
    echo "image: debugfs could not pin the ctimes of $2:" >&2; cat "$2.debugfs.log" >&2; exit 1
  fi
}
mib=$((1024 * 1024))
clamp "$root"; clamp "$boot"
truncate -s $((BOOT_MIB * mib)) "$work/boot.img"
mkfs.vfat -F 16 -n POCOBOOT -i "$(hex boot-volid 8)" --invariant "$work/boot.img" >/dev/null
(cd "$boot" && find . -mindepth 1 -maxdepth 1 | sort | sed 's|^\./||' |
  while read -r f; do mcopy -i "$work/boot.img" -s -m -p -Q "$f" ::; done)
mke2fs_opts=(-q -F -t ext4 -b 4096 -I 256 -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0)
truncate -s $((ROOT_MIB * mib)) "$work/root.img"
mkfs.ext4 "${mke2fs_opts[@]}" -O ^has_journal -L pocoroot -U "$(uuid root)" \
  -E hash_seed="$(uuid root-hash)" -m 0 -d "$root" "$work/root.img"
pin_ctimes "$root" "$work/root.img"
# A new file system was cleanly made: the first boot is a normal one
# (init's clean-shutdown marker), not a power-loss recovery.
data="$work/data"
mkdir -p "$data"
: >"$data/.clean-shutdown"
clamp "$data"
truncate -s $((DATA_MIB * mib)) "$work/data.img"
mkfs.ext4 "${mke2fs_opts[@]}" -L pocodata -U "$(uuid data)" -E hash_seed="$(uuid data-hash)" \
  -m 1 -d "$data" "$work/data.img"
pin_ctimes "$data" "$work/data.img"

img="$out/pocobelle-$board.img"
first=4   # MiB before partition 1: the MBR, and room for a board's own boot loader
rm -f "$img"
truncate -s $(((first + BOOT_MIB + ROOT_MIB + DATA_MIB) * mib)) "$img"
s=$((mib / 512))
sfdisk -q --no-reread --no-tell-kernel "$img" <<EOF
label: dos
label-id: 0x$(hex disk-id 8)
unit: sectors
start=$((first * s)), size=$((BOOT_MIB * s)), type=e, bootable
start=$(((first + BOOT_MIB) * s)), size=$((ROOT_MIB * s)), type=83
start=$(((first + BOOT_MIB + ROOT_MIB) * s)), size=$((DATA_MIB * s)), type=83
EOF
dd if="$work/boot.img" of="$img" bs=1M seek=$first conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=1M seek=$((first + BOOT_MIB)) conv=notrunc,sparse status=none
dd if="$work/data.img" of="$img" bs=1M seek=$((first + BOOT_MIB + ROOT_MIB)) conv=notrunc,sparse status=none

bmap="$out/pocobelle-$board.bmap"
bmaptool -q create -o "$bmap" "$img"
(cd "$out" && sha256sum "pocobelle-$board.img" "pocobelle-$board.bmap" >SHA256SUMS)
echo "image: $img ($(du -k "$img" | cut -f1) KiB on disk of $(($(stat -c %s "$img") / mib)) MiB; kernel $kver)"
