#!/usr/bin/env bash
# scripts/run.sh [BOARD]: `make run`. Boots the qemu-armv7 image as a
# board would boot it: qemu-system-arm -M virt -m 64 with Debian's U-Boot
# for QEMU, the image as a virtio disk, the serial console on this
# terminal (Ctrl-A X quits). The guest is isolated: QEMU's user network
# with restrict=on, so nothing leaves this machine; only DNS (TCP) and
# SMTP are forwarded to loopback ports. The board runs on a copy of the
# image (out/BOARD/run.img, made again when the image is newer), so the
# image keeps its checksums and the copy keeps its state between runs,
# as a USB key would: delete it to start afresh.
set -euo pipefail
board=${1:-qemu-armv7}
repo=$(cd "$(dirname "$0")/.." && pwd)
img="$repo/out/$board/pocobelle-$board.img"
run="$repo/out/$board/run.img"
dns_port=${RUN_DNS_PORT:-10053}
smtp_port=${RUN_SMTP_PORT:-10025}
uboot=/usr/lib/u-boot/qemu_arm/u-boot.bin
[ "$board" = qemu-armv7 ] || { echo "run: only qemu-armv7 boots in QEMU (got $board)" >&2; exit 1; }
[ -f "$img" ] || { echo "run: $img is missing (make image)" >&2; exit 1; }
if [ ! -f "$run" ] || [ "$img" -nt "$run" ]; then
  cp --sparse=always "$img" "$run"
  echo "run: fresh copy of the image in $run (the first boot writes the swap file)"
fi
echo "run: booting $board with 64 MB under QEMU (software emulation: about 30 s to the services)"
echo "run: DNS on 127.0.0.1:$dns_port over TCP (QEMU's isolated network carries no UDP back):"
echo "       dig +tcp @127.0.0.1 -p $dns_port nosuch.home.arpa"
echo "run: SMTP on 127.0.0.1:$smtp_port (set your domain in pocobelle.toml first; see the README):"
echo "       swaks --server 127.0.0.1:$smtp_port --to you@example.org"
echo "run: on the console: pocobelle status, pocobelle mailq, pocobelle log, pocobelle poweroff"
echo "run: Ctrl-A X quits QEMU at once (as pulling the plug: the next boot is a recovery boot)"
exec qemu-system-arm -M virt -cpu cortex-a7 -m 64 -bios "$uboot" -nographic -no-reboot \
  -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$dns_port-:53,hostfwd=tcp:127.0.0.1:$smtp_port-:25" \
  -device virtio-net-device,netdev=net0 \
  -drive file="$run",if=none,format=raw,id=disk -device virtio-blk-device,drive=disk
