#!/usr/bin/env bash
# tests/image/structure.sh BOARD: checks the built image of one board by
# its structure, with tools no one here wrote (sfdisk, mtools, mkimage,
# debugfs, cpio, bmaptool, sha256sum): the partition table, the boot
# partition's files for the board's boot method (mkimage reads the boot
# script and legacy images back), the configuration on it valid for the
# ARM binary itself, the root file system's contents (the binary equal to
# out/, links, modules, e2fsck, BusyBox, the CA bundle, NUT starting
# from it under qemu-user), the initramfs,
# the data partition, SHA256SUMS, and the bmap (bmaptool copies the image
# through it to a file and the copy must equal the image). With
# REPRODUCE=1 it builds the image a second time into a scratch directory
# and requires byte-identical files.
set -euo pipefail
board=${1:?usage: structure.sh BOARD}
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/board/$board/board.conf"
out="$repo/out/$board"
img="$out/pocobelle-$board.img"
work="$repo/target/image-check/$board"
rm -rf "$work"; mkdir -p "$work"
fails=0
ok() { echo "  ok: $board: $*"; }
fail() { echo "  FAIL: $board: $*"; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...: ok when the command succeeds
  local d=$1; shift
  if "$@" >"$work/last.log" 2>&1; then ok "$d"; else fail "$d: $(head -c 300 "$work/last.log")"; fi
}
mib=$((1024 * 1024))

check "SHA256SUMS verifies" bash -c "cd '$out' && sha256sum --quiet -c SHA256SUMS"

# --- partition table -----------------------------------------------------
sfdisk -d "$img" >"$work/table"
s=$((mib / 512))
b1=$((4 * s)); b2=$((b1 + BOOT_MIB * s)); b3=$((b2 + ROOT_MIB * s))
check "MBR: FAT16 boot partition at 4 MiB, bootable" \
  grep -qE "img1 : start= +$b1, size= +$((BOOT_MIB * s)), type=e, bootable" "$work/table"
check "MBR: root partition (Linux)" grep -qE "img2 : start= +$b2, size= +$((ROOT_MIB * s)), type=83$" "$work/table"
check "MBR: data partition (Linux), last" grep -qE "img3 : start= +$b3, size= +$((DATA_MIB * s)), type=83$" "$work/table"
[ "$(stat -c %s "$img")" = $(((b3 + DATA_MIB * s) * 512)) ] && ok "image ends with the data partition" ||
  fail "image size $(stat -c %s "$img") is not the end of partition 3"
dd if="$img" of="$work/boot.img" bs=1M skip=4 count="$BOOT_MIB" status=none
dd if="$img" of="$work/root.img" bs=1M skip=$((4 + BOOT_MIB)) count="$ROOT_MIB" status=none
dd if="$img" of="$work/data.img" bs=1M skip=$((4 + BOOT_MIB + ROOT_MIB)) count="$DATA_MIB" status=none

# --- boot partition --------------------------------------------------------
check "boot partition is FAT labelled POCOBOOT" bash -c "blkid -o export '$work/boot.img' | grep -qx LABEL=POCOBOOT"
mdir -i "$work/boot.img" -b -/ :: >"$work/boot.files"
need_boot=(::/pocobelle.toml ::/README.txt)
case "$KERNEL_FORMAT" in
  zImage) need_boot+=(::/zImage ::/initrd.gz) ;;
  uImage) need_boot+=(::/uImage ::/uInitrd) ;;
esac
case "$BOOT_METHOD" in
  bootscr) need_boot+=(::/boot.scr ::/boot.cmd) ;;
  extlinux) need_boot+=(::/extlinux/extlinux.conf) ;;
esac
[ -n "$DTB_DIR" ] && need_boot+=("::/$DTB_DIR/am335x-boneblack.dtb" "::/$DTB_DIR/sun8i-h3-orangepi-pc.dtb" "::/$DTB_DIR/imx6q-wandboard.dtb")
for f in "${need_boot[@]}"; do
  grep -qx "$f" "$work/boot.files" && ok "boot partition has ${f#::/}" || fail "boot partition lacks ${f#::/}"
done
mcopy -n -i "$work/boot.img" ::pocobelle.toml "$work/pocobelle.toml"
qemu=$([ "$BOARD_ARCH" = armv5te ] && echo "qemu-arm-static -cpu arm926" || echo "qemu-arm-static -cpu cortex-a7")
check "pocobelle.toml on the boot partition passes check-config on ARM" \
  $qemu "$repo/out/$BOARD_ARCH/pocobelle" check-config "$work/pocobelle.toml"
check "pocobelle.toml: DHCP on $NET_IF, data by label, DNS on every address" \
  bash -c "grep -qx 'interface = \"$NET_IF\"' '$work/pocobelle.toml' && grep -qx 'dhcp = true' '$work/pocobelle.toml' &&
           grep -qx 'data_device = \"/dev/disk/by-label/pocodata\"' '$work/pocobelle.toml' &&
           grep -qx 'listen = \[\"0.0.0.0:53\", \"\[::\]:53\"\]' '$work/pocobelle.toml'"
cmdline_re='root=LABEL=pocoroot ro rootwait pocobelle.data=/dev/disk/by-label/pocodata'
if [ "$BOOT_METHOD" = bootscr ]; then
  mcopy -n -i "$work/boot.img" ::boot.scr "$work/boot.scr"
  check "mkimage reads boot.scr back as a U-Boot script" bash -c "mkimage -l '$work/boot.scr' | grep -q 'Script'"
  dd if="$work/boot.scr" of="$work/boot.scr.body" bs=72 skip=1 status=none
  check "boot.scr sets the command line (console=$CONSOLE, root by label)" \
    bash -c "grep -aq 'console=$CONSOLE $cmdline_re' '$work/boot.scr.body'"
else
  mcopy -n -i "$work/boot.img" ::extlinux/extlinux.conf "$work/extlinux.conf"
  check "extlinux.conf: kernel, initrd, fdtdir and the command line" \
    bash -c "grep -q '^  kernel /zImage' '$work/extlinux.conf' && grep -q '^  initrd /initrd.gz' '$work/extlinux.conf' &&
             grep -q '^  fdtdir /$DTB_DIR' '$work/extlinux.conf' && grep -q 'append console=$CONSOLE $cmdline_re' '$work/extlinux.conf'"
fi
if [ "$KERNEL_FORMAT" = uImage ]; then
  mcopy -n -i "$work/boot.img" ::uImage "$work/uImage"
  mcopy -n -i "$work/boot.img" ::uInitrd "$work/uInitrd"
  check "mkimage reads uImage back: ARM Linux kernel, loaded at 0x8000" \
    bash -c "mkimage -l '$work/uImage' | grep -q 'ARM Linux Kernel Image' && mkimage -l '$work/uImage' | grep -q 'Load Address: 00008000'"
  check "uImage carries the appended device tree $DTB" \
    bash -c "grep -c \$'\xd0\x0d\xfe\xed' '$work/uImage' >/dev/null"
  check "mkimage reads uInitrd back: ARM Linux RAMDisk, gzip" \
    bash -c "mkimage -l '$work/uInitrd' | grep -q 'ARM Linux RAMDisk Image (gzip compressed)'"
  dd if="$work/uInitrd" of="$work/initrd.gz" bs=64 skip=1 status=none
else
  mcopy -n -i "$work/boot.img" ::initrd.gz "$work/initrd.gz"
fi

# --- initramfs -------------------------------------------------------------
gzip -dc "$work/initrd.gz" | cpio -t --quiet 2>/dev/null | sort >"$work/initramfs.files"
for f in init bin/busybox bin/switch_root bin/findfs dev/console etc/modules; do
  grep -qx "$f" "$work/initramfs.files" && ok "initramfs has /$f" || fail "initramfs lacks /$f"
done
for m in $INITRAMFS_MODULES; do
  pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
  if grep -qE "/$pat\.ko$" "$work/initramfs.files"; then ok "initramfs has module $m"
  elif grep -qE "/$pat\.ko$" "$repo"/target/debs/"$DEB_ARCH"-*/root/lib/modules/*/modules.builtin; then ok "module $m is built into the kernel"
  else fail "initramfs lacks module $m"; fi
done

# --- root file system ------------------------------------------------------
check "root partition is ext4 labelled pocoroot" bash -c "blkid -o export '$work/root.img' | grep -qx LABEL=pocoroot"
check "root file system is clean (e2fsck -fn)" e2fsck -fn "$work/root.img"
debugfs -R "dump /bin/pocobelle $work/pocobelle" "$work/root.img" 2>/dev/null
cmp -s "$work/pocobelle" "$repo/out/$BOARD_ARCH/pocobelle" && ok "/bin/pocobelle is out/$BOARD_ARCH/pocobelle" ||
  fail "/bin/pocobelle differs from out/$BOARD_ARCH/pocobelle"
link() { debugfs -R "stat $1" "$work/root.img" 2>/dev/null | sed -n 's/^Fast link dest: "\(.*\)"$/\1/p'; }
[ "$(link /sbin/init)" = ../bin/pocobelle ] || [ "$(link /sbin/init)" = /bin/pocobelle ] && ok "/sbin/init runs pocobelle" ||
  fail "/sbin/init -> '$(link /sbin/init)'"
[ "$(link /etc/pocobelle.toml)" = /boot/pocobelle.toml ] && ok "/etc/pocobelle.toml is the boot partition's" ||
  fail "/etc/pocobelle.toml -> '$(link /etc/pocobelle.toml)'"
[ "$(link /bin/sh)" = busybox ] && ok "/bin/sh is BusyBox" || fail "/bin/sh -> '$(link /bin/sh)'"
debugfs -R "dump /etc/ssl/certs/ca-certificates.crt $work/ca.crt" "$work/root.img" 2>/dev/null
n=$(grep -c 'BEGIN CERTIFICATE' "$work/ca.crt" 2>/dev/null || true)
[ "${n:-0}" -ge 100 ] && ok "/etc/ssl/certs/ca-certificates.crt holds $n certificates" || fail "CA bundle holds ${n:-0} certificates"
for f in /sbin/e2fsck /bin/busybox /etc/passwd /etc/group /etc/pocobelle.toml.example /usr/sbin/sendmail /sbin/udhcpc; do
  debugfs -R "stat $f" "$work/root.img" 2>/dev/null | grep -q '^Inode:' && ok "root has $f" || fail "root lacks $f"
done
kver=$(debugfs -R "ls -p /lib/modules" "$work/root.img" 2>/dev/null | awk -F/ '$6 ~ /^[0-9]/ {print $6}' | head -n1)
debugfs -R "rdump /lib/modules $work" "$work/root.img" >/dev/null 2>&1
for m in $MODULES; do
  pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
  if find "$work/modules" -regex ".*/$pat\.ko" | grep -q .; then ok "root has module $m ($kver)"
  else fail "root lacks module $m"; fi
done

# Network UPS Tools: every driver of NUT_DRIVERS and upsd start from the
# image's own root (its glibc and libraries, found by the image's dynamic
# loader) under qemu-user, and print their version.
. "$repo/board/common/debs.sh"
mkdir -p "$work/nutroot"
for d in lib usr; do debugfs -R "rdump /$d $work/nutroot" "$work/root.img" >/dev/null 2>&1; done
nutq=$([ "$DEB_ARCH" = armel ] && echo "qemu-arm-static -cpu arm926" || echo "qemu-arm-static -cpu cortex-a7")
for prog in upsd $NUT_DRIVERS; do
  nut_out=$($nutq -L "$work/nutroot" "$work/nutroot/lib/nut/$prog" -h 2>&1 | head -n1 || true)
  if grep -q 'Network UPS Tools' <<<"$nut_out"; then
    ok "NUT $prog starts from the image ($nut_out)"
  else
    fail "NUT $prog does not start from the image: $nut_out"
  fi
done
nut_kb=$(du -sk "$work/nutroot/lib/nut" "$work/nutroot/lib/arm-linux-gnueabi"* "$work/nutroot/usr/lib/arm-linux-gnueabi"* 2>/dev/null | awk '{s+=$1} END {print s}')
ok "NUT and its libraries take $nut_kb KiB of the root file system"

# --- data partition --------------------------------------------------------
check "data partition is ext4 labelled pocodata, clean" \
  bash -c "blkid -o export '$work/data.img' | grep -qx LABEL=pocodata && e2fsck -fn '$work/data.img'"

# --- bmap: bmaptool itself writes the image through it --------------------
rm -f "$work/copy.img"
check "bmaptool copies the image through the .bmap (checksums verified)" \
  bmaptool -q copy --bmap "$out/pocobelle-$board.bmap" "$img" "$work/copy.img"
cmp -s "$img" "$work/copy.img" && ok "the bmap copy equals the image" || fail "the bmap copy differs from the image"
rm -rf "$work/copy.img" "$work"/*.img "$work/nutroot"

if [ "${REPRODUCE:-0}" = 1 ]; then
  bash "$repo/scripts/image.sh" "$board" "$work/again" >/dev/null
  for f in "pocobelle-$board.img" "pocobelle-$board.bmap" SHA256SUMS; do
    cmp -s "$out/$f" "$work/again/$f" && ok "reproducible: a second build gives the same $f" ||
      fail "not reproducible: $f differs between two builds"
  done
  rm -rf "$work/again"
fi

if [ "$fails" -ne 0 ]; then echo "structure: $board: $fails check(s) failed" >&2; exit 1; fi
echo "structure: $board: all checks passed"
