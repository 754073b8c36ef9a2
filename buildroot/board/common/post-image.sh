#!/usr/bin/env bash
# board/common/post-image.sh BINARIES_DIR BOARD: Buildroot's post-image
# script for every Pocobelle defconfig (BR2_ROOTFS_POST_SCRIPT_ARGS gives
# BOARD). It makes the disk the project's image builder (scripts/image.sh)
# makes, from Buildroot's kernel, root file system and BusyBox, with
# genimage and board/BOARD/genimage.cfg of this tree:
#   BINARIES_DIR/pocobelle-BOARD.img   MBR, partition 1 at 4 MiB:
#     1 FAT16 "POCOBOOT" (bootable): kernel, initramfs, device trees,
#       boot.scr or extlinux/extlinux.conf, pocobelle.toml
#     2 ext4 "pocoroot" (rootfs.ext4, read-only at run time)
#     3 ext4 "pocodata" (empty: spool, DNS snapshot, swap file, log)
#   BINARIES_DIR/pocobelle-BOARD.bmap  when host bmap-tools is built
#   BINARIES_DIR/SHA256SUMS
# The board's parameters (kernel format, boot method, console, command
# line, load addresses, partition sizes) come from board/BOARD/board.conf
# of the project; the initramfs's /init and the pocobelle.toml template
# from its board/common/.
set -euo pipefail
usage="usage: post-image.sh BINARIES_DIR BOARD"
binaries=${1:?$usage}
board=${2:?$usage (set BR2_ROOTFS_POST_SCRIPT_ARGS to the board name)}
ext=${BR2_EXTERNAL_POCOBELLE_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}
repo=$(cd "$ext/.." && pwd)
conf="$repo/board/$board/board.conf"
die() { echo "pocobelle post-image: $*" >&2; exit 1; }
[ -f "$conf" ] || die "no board $board ($conf is missing)"
# shellcheck source=/dev/null
. "$conf"
: "${TARGET_DIR:?run by Buildroot (TARGET_DIR is not set)}"
: "${BUILD_DIR:?run by Buildroot (BUILD_DIR is not set)}"
for f in "$repo/board/common/initramfs-init" "$repo/board/common/pocobelle.toml" "$ext/board/$board/genimage.cfg"; do
  [ -f "$f" ] || die "$f is missing"
done
export LC_ALL=C
umask 022

work="$BUILD_DIR/pocobelle-image-$board"
rm -rf "$work"
boot="$work/genroot/boot"   # genimage fills the FAT partition from here
mkdir -p "$boot" "$work/tmp"

# --- initramfs: BusyBox and the project's /init ------------------------
ird="$work/initramfs"
mkdir -p "$ird"/{bin,etc,proc,sys,dev,newroot}
bb="$TARGET_DIR/bin/busybox"
[ -x "$bb" ] || die "no BusyBox in the target (BR2_PACKAGE_BUSYBOX)"
readelf=$(ls "${HOST_DIR:-/nonexistent}"/bin/*-readelf 2>/dev/null | head -n1 || true)
if [ -n "$readelf" ] && "$readelf" -l "$bb" | grep -q 'Requesting program interpreter'; then
  die "BusyBox is dynamically linked: the initramfs needs it static (board/common/busybox.fragment)"
fi
install -m 0755 "$bb" "$ird/bin/busybox"
for a in sh mount umount switch_root insmod mkdir sleep cat ln findfs setsid cttyhack reboot ls; do
  ln -s busybox "$ird/bin/$a"
done
install -m 0755 "$repo/board/common/initramfs-init" "$ird/init"
# Storage drivers the board needs before its root is mounted
# (INITRAMFS_MODULES), when the kernel has them as modules (the kernel
# fragments of this tree build them in; post-build.sh kept the files).
: >"$ird/etc/modules"
kdir=$(ls -d "$TARGET_DIR"/lib/modules/*/ 2>/dev/null | head -n1 || true)
if [ -n "$kdir" ]; then
  kver=$(basename "$kdir")
  moddir=${kdir%/}
  for m in $INITRAMFS_MODULES; do
    pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
    line=$(grep -E "(^|/)$pat\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 || true)
    [ -n "$line" ] || continue   # built in
    for f in $(echo "${line#*:}" | tr ' ' '\n' | tac) "${line%%:*}"; do
      grep -qxF "$kver/$f" "$ird/etc/modules" && continue
      mkdir -p "$ird/lib/modules/$kver/$(dirname "$f")"
      cp "$moddir/$f" "$ird/lib/modules/$kver/$f"
      echo "$kver/$f" >>"$ird/etc/modules"
    done
  done
fi
# /dev/console must exist before devtmpfs is mounted: make the archive
# under Buildroot's fakeroot so that the device node needs no root.
"$HOST_DIR/bin/fakeroot" -- sh -c '
  mknod -m 0600 "$1/dev/console" c 5 1 &&
  cd "$1" && find . | sort | cpio -o -H newc --quiet -R 0:0' sh "$ird" |
  gzip -n -9 >"$work/initrd.gz"

# --- boot partition -----------------------------------------------------
cmdline="console=$CONSOLE root=LABEL=pocoroot ro rootwait pocobelle.data=/dev/disk/by-label/pocodata $CMDLINE"
case "$KERNEL_FORMAT" in
  zImage)
    cp "$binaries/zImage" "$boot/zImage"
    cp "$work/initrd.gz" "$boot/initrd.gz"
    ;;
  uImage)
    # Old U-Boot without device trees: the tree appended to zImage
    # (CONFIG_ARM_APPENDED_DTB), loaded at 0x8000.
    [ -f "$binaries/$DTB" ] || die "$DTB was not built (BR2_LINUX_KERNEL_INTREE_DTS_NAME)"
    cat "$binaries/zImage" "$binaries/$DTB" >"$work/zImage+dtb"
    mkimage -A arm -O linux -T kernel -C none -a 0x00008000 -e 0x00008000 \
      -n "pocobelle $board" -d "$work/zImage+dtb" "$boot/uImage" >/dev/null
    mkimage -A arm -O linux -T ramdisk -C gzip -a 0 -e 0 -n "pocobelle initramfs" \
      -d "$work/initrd.gz" "$boot/uInitrd" >/dev/null
    ;;
  *) die "unknown KERNEL_FORMAT $KERNEL_FORMAT" ;;
esac
if [ -n "$DTB_DIR" ]; then
  mkdir -p "$boot/$DTB_DIR"
  find "$binaries" -maxdepth 1 -name '*.dtb' -exec cp {} "$boot/$DTB_DIR/" \;
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
    mkimage -A arm -O linux -T script -C none -n "pocobelle $board" \
      -d "$boot/boot.cmd" "$boot/boot.scr" >/dev/null
    ;;
  *) die "unknown BOOT_METHOD $BOOT_METHOD" ;;
esac
# shellcheck disable=SC2086 # word list
mods_toml=$(printf '"%s", ' $MODULES); mods_toml=${mods_toml%, }
[ -n "$MODULES" ] || mods_toml=""
sed -e "s|@BOARD@|$board|g" -e "s|@NET_IF@|$NET_IF|g" -e "s|@MODULES@|$mods_toml|g" \
  "$repo/board/common/pocobelle.toml" >"$boot/pocobelle.toml"
kver_txt=$(ls "$TARGET_DIR/lib/modules" 2>/dev/null | head -n1 || true)
cat >"$boot/README.txt" <<EOF
Pocobelle for $board: $BOARD_DESC
Edit pocobelle.toml here before the first boot; see the comments in it.
Built with Buildroot (the project's buildroot/ tree); kernel ${kver_txt:-(no modules)}, command line:
  $cmdline
EOF

# --- the disk -----------------------------------------------------------
[ -f "$binaries/rootfs.ext4" ] || die "no rootfs.ext4 (BR2_TARGET_ROOTFS_EXT2_4)"
rm -f "$binaries/pocobelle-$board.img" "$binaries/pocobelle-$board.bmap"
genimage \
  --rootpath "$work/genroot" \
  --tmppath "$work/tmp" \
  --inputpath "$binaries" \
  --outputpath "$binaries" \
  --config "$ext/board/$board/genimage.cfg"
img="$binaries/pocobelle-$board.img"
[ -f "$img" ] || die "genimage made no $img (board/$board/genimage.cfg)"
sums=("pocobelle-$board.img")
if command -v bmaptool >/dev/null 2>&1; then
  bmaptool create -o "$binaries/pocobelle-$board.bmap" "$img"
  sums+=("pocobelle-$board.bmap")
fi
(cd "$binaries" && sha256sum "${sums[@]}" >SHA256SUMS)
echo "pocobelle post-image: $img ($(($(stat -c %s "$img") / 1048576)) MiB)"
