#!/usr/bin/env bash
# tests/boot/boot-test.sh ARMV7_BINARY HOST_BINARY: boots the ARMv7 `pocobelle` as PID 1
# in `qemu-system-arm -M virt -m 64` with Debian bookworm's armmp kernel and
# an initramfs built here, six times, on a scratch ext4 disk image (a file).
#
# Boot 1 (fresh disk, no clean-shutdown marker): init loads the virtio and
# ext4 modules, runs e2fsck, mounts /data, writes the swap file, applies
# the sysctls, starts `sleeper` (primed through its readiness fd) and then
# `checker` (tests/boot/check.sh), which checks mounts, swap, sysctls, an
# orphan reaped, the sleeper's user/oom/memory ceiling and its restart
# after SIGKILL, `pocobelle status` and `pocobelle log` (the service's
# output reaches the log ring), then runs `pocobelle poweroff`.
# Boot 2: the last shutdown must be reported clean, fsck skipped, the swap
# file reused. Before it, /data/dns.snapshot (boot 1's, empty) is replaced
# with one of 20,000 names made by the host's `pocobelle dns`
# (tests/boot/make-dns-snapshot.py), with the owner and mode dns gave its
# own, plus /data/board-mem.expect: check.sh then asserts the names were
# loaded on ARM and are answered from the cache, prints the resident
# memory of dns, init and mail (`board-mem:` lines, shown here too) and
# holds dns's private memory to DNS_ANON_MAX_KB and its peak (VmHWM) to
# DNS_HWM_MAX_KB.
# Boot 3 (kernel flag pocobelle.drill-panic): init panics on purpose
# once /data is mounted and swap is on, its panic hook writes
# the log file and re-executes it in recovery mode, and the boot
# completes as the others. Each boot must end with the kernel's power-off and QEMU
# exiting by itself.
# Boot 4 (pocobelle.rescue, and pocobelle.config= naming a configuration
# with a typo): the test types a command into the rescue shell on the
# serial console and sees its output, exits the shell, and the boot goes
# on in safe mode from the last good copy kept on /data (dns, not mail).
# Boot 5 (pocobelle.drill-watchdog): init stops feeding softdog and the
# board must reset by itself. Every boot but 5 checks the watchdog in
# status and its magic close at shutdown, and after boot 4 the log file
# on the disk image must hold boots 1-4 (one batch per boot).
# Boots 1-3 also check static IPv4/IPv6 addresses and routes
# (tests/boot/check-net.sh); boot 6 (tests/boot/net-boot.sh) gets eth0's
# address by DHCP through udhcpc. The guest's only network is QEMU's user
# network with restrict=on (no packet leaves the host).
set -euo pipefail
usage="usage: boot-test.sh ARMV7_BINARY HOST_BINARY"
bin=$(realpath "${1:?$usage}")
# The host's own build (`cargo test` / `cargo build` make target/debug/pocobelle):
# it fills the DNS cache that boot 2 loads.
host_bin=$(realpath "${2:?$usage}")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/target/debs/armhf-armmp"
work="$repo/target/boot-test"
timeout_s=${BOOT_TIMEOUT:-420}

bash "$here/fetch-armhf.sh" "$cache"
root="$cache/root"
kver=$(basename "$(ls -d "$root"/lib/modules/*/ | head -n1)")
kernel="$root/boot/vmlinuz-$kver"
[ -f "$kernel" ] || { echo "boot-test: no kernel in $root/boot" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"

ird="$work/initramfs"
mkdir -p "$ird"/{bin,sbin,etc,proc,sys,dev,run,tmp,data,test,lib/modules/"$kver"}
cp "$bin" "$ird/bin/pocobelle"
ln -s /bin/pocobelle "$ird/init"
ln -s /bin/pocobelle "$ird/sbin/init"
cp "$root/bin/busybox" "$ird/bin/busybox"
for a in sh sleep cat grep awk kill stat ls echo mkdir ip nslookup tail head; do ln -s busybox "$ird/bin/$a"; done
ln -s /bin/busybox "$ird/sbin/udhcpc"
cp "$root/sbin/e2fsck.static" "$ird/sbin/e2fsck"
# The modules the test config names, with every dependency modules.dep lists.
moddir="$root/lib/modules/$kver"
cp "$moddir/modules.dep" "$moddir/modules.builtin" "$ird/lib/modules/$kver/"
for m in virtio_mmio virtio_blk crc32c_generic ext4 virtio_net softdog; do
  line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)
  [ -n "$line" ] || { echo "boot-test: module $m not in modules.dep" >&2; exit 1; }
  for f in ${line/:/}; do
    mkdir -p "$ird/lib/modules/$kver/$(dirname "$f")"
    cp "$moddir/$f" "$ird/lib/modules/$kver/$f"
  done
done
cp "$here/pocobelle.toml" "$ird/etc/pocobelle.toml"
cp "$here/broken.toml" "$ird/etc/broken.toml"
cp "$here/check.sh" "$ird/test/check.sh"
cp "$here/check-net.sh" "$ird/test/check-net.sh"
printf 'root:x:0:0:root:/:/bin/sh\nboottest:x:1000:1000:boot test:/:/bin/sh\npocobelle-dns:x:101:101::/:/bin/false\npocobelle-mail:x:102:102::/:/bin/false\n' >"$ird/etc/passwd"
printf 'root:x:0:\nboottest:x:1000:\npocobelle-dns:x:101:\npocobelle-mail:x:102:\npocobelle:x:100:pocobelle-dns,pocobelle-mail\n' >"$ird/etc/group"
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# The data partition: an ext4 file system in a file (never a device).
truncate -s 128M "$work/disk.img"
mkfs.ext4 -q -F -L data "$work/disk.img"

# The DNS cache of 20,000 names for boot 2, filled by the real service on
# the host (loopback only); the file is portable to ARM (snapshot.rs).
board_names=20000
python3 "$here/make-dns-snapshot.py" "$host_bin" "$work/dns.snapshot" "$board_names"

boot() { # N [EXTRA KERNEL ARGS]: boots once, console to $work/bootN.log
  local n=$1 log="$work/boot$1.log" rc=0 extra=${2:-}
  echo "boot-test: boot $n (log $log)"
  timeout --foreground "$timeout_s" qemu-system-arm -M virt -m 64 \
    -netdev user,id=net0,restrict=on -device virtio-net-device,netdev=net0 \
    -nographic -no-reboot -monitor none -serial stdio \
    -kernel "$kernel" -initrd "${initrd:-$work/initrd.gz}" \
    -append "console=ttyAMA0 panic=-1 quiet loglevel=4 $extra" \
    -drive file="$work/disk.img",if=none,format=raw,id=data \
    -device virtio-blk-device,drive=data \
    </dev/null >"$log" 2>&1 || rc=$?
  tr -d '\r' <"$log" >"$log.txt"
  if [ "$rc" = 124 ]; then
    tail -n 40 "$log.txt"
    echo "boot-test: boot $n did not power off within ${timeout_s}s" >&2
    exit 1
  fi
}

# --- boot 4: the serial console driven through a FIFO -----------------
wait_log() { # LOG PATTERN SECONDS QEMU_PID: until PATTERN is in LOG
  local i=0
  while [ "$i" -lt "$3" ]; do
    if tr -d '\r' <"$1" | grep -qE "$2"; then return 0; fi
    kill -0 "$4" 2>/dev/null || return 1
    sleep 1; i=$((i + 1))
  done
  return 1
}
boot_rescue() { # N KERNEL ARGS: boots with console input from a FIFO and
  # uses the rescue shell: one command, its output checked later, exit.
  local n=$1 log="$work/boot$1.log" rc=0 extra=$2 fifo="$work/console$1.in" qpid
  echo "boot-test: boot $n (log $log; console input from $fifo)"
  rm -f "$fifo"; mkfifo "$fifo"; : >"$log"
  timeout --foreground "$timeout_s" qemu-system-arm -M virt -m 64 \
    -netdev user,id=net0,restrict=on -device virtio-net-device,netdev=net0 \
    -nographic -no-reboot -monitor none -serial stdio \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyAMA0 panic=-1 quiet loglevel=4 $extra" \
    -drive file="$work/disk.img",if=none,format=raw,id=data \
    -device virtio-blk-device,drive=data \
    <"$fifo" >"$log" 2>&1 &
  qpid=$!
  exec 3>"$fifo"
  if wait_log "$log" 'rescue# ' "$timeout_s" "$qpid"; then
    # The shell must run this (the typed line echoes "$((6*7))", only the
    # shell prints 42) and see /data mounted.
    printf '%s\n' 'echo rescue-sum=$((6*7)) data-mounts=$(grep -c " /data " /proc/mounts)' >&3
    wait_log "$log" 'rescue-sum=42' 60 "$qpid" || true
    printf 'exit\n' >&3
  fi
  wait "$qpid" || rc=$?
  exec 3>&-
  tr -d '\r' <"$log" >"$log.txt"
  if [ "$rc" = 124 ]; then
    tail -n 40 "$log.txt"
    echo "boot-test: boot $n did not power off within ${timeout_s}s" >&2
    exit 1
  fi
}

# Replaces /data/dns.snapshot on the (powered-off) disk image with the one
# made above, with the owner, group and mode dns gave the file it wrote at
# boot 1's shutdown: /data is sticky (1770), so dns can replace the file
# at its next save only if it owns it. /data/board-mem.expect tells
# check.sh to measure (it removes the file).
inject_snapshot() {
  local st uid gid mode size
  st=$(debugfs -R "stat /dns.snapshot" "$work/disk.img" 2>/dev/null || true)
  uid=$(sed -n 's/^User: *\([0-9]*\) *Group: *\([0-9]*\).*/\1/p' <<<"$st")
  gid=$(sed -n 's/^User: *\([0-9]*\) *Group: *\([0-9]*\).*/\2/p' <<<"$st")
  mode=$(sed -n 's/.*Mode: *\([0-7]*\).*/\1/p' <<<"$st")
  if [ -z "$uid" ] || [ -z "$gid" ] || [ -z "$mode" ]; then
    echo "  FAIL: boot 1 left no /data/dns.snapshot to take its owner and mode from"
    fails=$((fails + 1)); return
  fi
  debugfs -w -f - "$work/disk.img" >"$work/debugfs-inject.log" 2>&1 <<EOF
rm /dns.snapshot
write $work/dns.snapshot /dns.snapshot
sif /dns.snapshot uid $uid
sif /dns.snapshot gid $gid
sif /dns.snapshot mode 0$(printf %o $((0100000 | 8#$mode)))
write $work/dns.snapshot.expect /board-mem.expect
sif /board-mem.expect uid 0
sif /board-mem.expect gid 0
sif /board-mem.expect mode 0100644
EOF
  st=$(debugfs -R "stat /dns.snapshot" "$work/disk.img" 2>/dev/null || true)
  size=$(stat -c %s "$work/dns.snapshot")
  if grep -qE "^User: +$uid +Group: +$gid .*Size: +$size\$" <<<"$st" &&
     grep -qE "Mode: +0*$mode " <<<"$st"; then
    echo "boot-test: /data/dns.snapshot replaced: $board_names names, $size bytes, uid $uid gid $gid mode $mode (as dns wrote it)"
  else
    echo "  FAIL: the snapshot was not written to the disk image:"; sed 's/^/    /' "$work/debugfs-inject.log"
    fails=$((fails + 1))
  fi
}

fails=0
expect() { # N PATTERN DESCRIPTION
  if grep -qE "$2" "$work/boot$1.log.txt"; then
    echo "  ok: boot $1: $3"
  else
    echo "  FAIL: boot $1: $3 (no line matching /$2/)"
    fails=$((fails + 1))
  fi
}
refuse() { # N PATTERN DESCRIPTION
  if grep -qE "$2" "$work/boot$1.log.txt"; then
    echo "  FAIL: boot $1: $3:"; grep -E "$2" "$work/boot$1.log.txt" | head -n 5 | sed 's/^/    /'
    fails=$((fails + 1))
  else
    echo "  ok: boot $1: $3"
  fi
}

safe_args="pocobelle.rescue pocobelle.config=/etc/broken.toml pocobelle.data=/dev/vda"
safe_args="$safe_args pocobelle.modules=virtio_mmio,virtio_blk,crc32c_generic,ext4"
for n in 1 2 3 4; do
  case $n in
    2) inject_snapshot; boot 2 ;;
    3) boot 3 pocobelle.drill-panic ;;
    4) boot_rescue 4 "$safe_args" ;;
    *) boot "$n" ;;
  esac
  if [ "$n" = 3 ]; then
    refuse "$n" 'Kernel panic|CHECK-FAIL' "no kernel panic or failed check"
  else
    refuse "$n" 'Kernel panic|CHECK-FAIL|PANIC' "no kernel panic, init panic or failed check"
  fi
  expect "$n" 'modules: loaded ext4' "ext4 loaded from modules.dep"
  for c in "mount /proc" "mount /sys" "mount /dev" "mount /dev/pts" "mount /run" "mount /tmp" "mount /data" \
           "data noatime commit=7" "swap active" "swapfile mode 0600" "sysctl swappiness" "sysctl min_free_kbytes" \
           "sysctl dirty_background_bytes" "sysctl dirty_writeback_centisecs" "orphan [0-9]+ reaped" "sleeper runs as uid 1000" \
           "sleeper oom_score_adj 300" "sleeper memory.max" "sleeper in its cgroup" "sleeper restarted" "status" \
           "status fits 80 columns" "log ring" "eth0 10.0.2.15/24" "default route via 10.0.2.2"; do
    expect "$n" "^checker: CHECK: $c.* ok" "$c"
  done
  expect "$n" 'CHECK: done' "checker finished"
  expect "$n" 'sysctl vm.dirty_background_bytes = ' "sysctls logged"
  expect "$n" 'supervisor: sleeper is primed' "readiness over POCOBELLE_READY_FD"
  expect "$n" 'supervisor: stopping sleeper' "services stopped at shutdown"
  expect "$n" 'swap: /data/swapfile off' "swapoff at shutdown"
  expect "$n" 'clean-shutdown marker written' "marker written"
  expect "$n" 'reboot: Power down' "clean power-off"
  # init log file, watchdog, real services
  for c in "watchdog active in status" "dns service answers" "dns running and primed" "status shows the dns cache"; do
    expect "$n" "^checker: CHECK: $c.* ok" "$c"
  done
  expect "$n" 'watchdog: /dev/watchdog, timeout 15 s, fed every 5 s armed' "watchdog armed with its timeout"
  expect "$n" 'watchdog: /dev/watchdog disarmed \(magic close\)' "watchdog disarmed at shutdown"
  refuse "$n" 'watchdog did not stop|Unexpected close|softdog: Initiating' "no watchdog reset after the power-off"
  writes=$(grep -cE 'logfile: [0-9]+ bytes appended to /data/pocobelle.log' "$work/boot$n.log.txt" || true)
  if [ "$writes" = 1 ]; then
    echo "  ok: boot $n: log file written in one batch (at shutdown)"
  else
    echo "  FAIL: boot $n: log file written $writes times (expected one batch)"; fails=$((fails + 1))
  fi
  if [ "$n" -ge 2 ]; then
    expect "$n" '^checker: CHECK: logfile holds the last boot up to its shutdown ok' "log file holds the previous boot"
  fi
  if [ "$n" != 4 ]; then
    expect "$n" '^checker: CHECK: mail running ok' "mail running"
    expect "$n" '^checker: CHECK: status shows the mail queue ok' "status shows the mail queue"
  fi
done
expect 1 'last shutdown was NOT clean' "fresh disk reported as unclean"
expect 1 'fsck: checking /dev/vda' "fsck after an unclean shutdown"
expect 1 'swap: writing /data/swapfile' "swap file created"
expect 2 'the last shutdown was clean' "clean shutdown recognised"
# The DNS cache's memory on the board, 20,000 names loaded from the snapshot.
expect 2 "^dns: INFO: snapshot loaded: $board_names entries \(0 skipped\)" "dns: the host-made snapshot loaded on ARM"
for c in "board-mem: dns loaded the snapshot" "board-mem: n[0-9]+.board.test answered" \
         "board-mem: the [0-9]+ names came from the cache" "board-mem: dns private \\(RssAnon\\)" \
         "board-mem: dns VmHWM"; do
  expect 2 "^checker: CHECK: $c.* ok" "$c"
done
expect 2 "^dns: INFO: snapshot written: $board_names entries" "dns replaced the snapshot it was given (owner and mode right)"
expect 3 "^dns: INFO: snapshot loaded: $board_names entries \(0 skipped\)" "dns loaded boot 2's snapshot"
echo "boot-test: DNS memory on the board (ARMv7 guest, 64 MB), cold (boot 1) and with $board_names names (boot 2):"
for n in 1 2; do
  grep -E '^checker: board-mem: ' "$work/boot$n.log.txt" | sed "s/^checker: /  boot $n: /" || true
done
refuse 2 'fsck: checking' "no fsck after a clean shutdown"
refuse 2 'swap: writing' "swap file reused"
expect 3 'init: PANIC: ' "drill: init panicked"
expect 3 'recovery drill; re-executing in recovery mode' "drill: the panic hook re-executes init"
expect 3 'RECOVERY boot #1' "drill: re-executed in recovery mode, not a kernel panic"
expect 3 'boot recovery #1' "drill: status shows the recovery boot"
expect 3 'checker: uptime .*boot recovery #1 +last shutdown clean' "drill: the last shutdown still reported clean after the panic"
# Boot 4: rescue shell, then safe mode.
expect 4 'starting /bin/sh on the console' "rescue: shell started"
expect 4 '^rescue-sum=42 data-mounts=1' "rescue: a typed command ran, with /data mounted"
expect 4 'rescue shell ended' "rescue: the boot continues after exit"
expect 4 'init: ERROR: init: /etc/broken.toml:8: .*comit_secs' "safe: the config error is logged"
expect 4 'SAFE MODE: using the last good configuration /data/pocobelle.toml.last-good' "safe: last good copy from /data"
expect 4 'SAFE MODE: not starting mail' "safe: mail held"
refuse 4 'supervisor: mail started' "safe: mail never started"
expect 4 'supervisor: dns is primed' "safe: dns started and primed"
for c in "safe: status says safe mode" "safe: status says why" "safe: mail not started" \
         "safe: services use the copy on /data" "safe: the error is in the log"; do
  expect 4 "^checker: CHECK: $c ok" "$c"
done
# The log file on the image (read with debugfs, the guest is off): boots
# 1-4 each up to their shutdown, and the panic drill's first init up to
# its panic (written by the panic hook): five inits.
debugfs -R "cat /pocobelle.log" "$work/disk.img" 2>/dev/null >"$work/pocobelle.log"
starts=$(grep -cE '^[0-9TZ:-]+ init: INFO: init: pocobelle .* starting as pid 1$' "$work/pocobelle.log" || true)
offs=$(grep -cE '^[0-9TZ:-]+ init: INFO: swap: /data/swapfile off$' "$work/pocobelle.log" || true)
panics=$(grep -cE '^[0-9TZ:-]+ init: PANIC: .*recovery drill; re-executing in recovery mode$' "$work/pocobelle.log" || true)
if [ "$starts" = 5 ] && [ "$offs" = 4 ] && [ "$panics" = 1 ] &&
   grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z init: INFO: ' "$work/pocobelle.log"; then
  echo "  ok: log file on the disk: 5 inits, 4 shutdowns and the drill's panic, time-stamped"
else
  echo "  FAIL: log file on the disk: $starts starts, $offs shutdowns, $panics panics (expected 5, 4, 1)"; fails=$((fails + 1))
fi

# Boot 5: the watchdog drill ends in a reset by softdog, not a power-off.
boot 5 pocobelle.drill-watchdog
expect 5 'watchdog: DRILL' "drill: init stops feeding the watchdog"
expect 5 'softdog: Initiating system reboot' "drill: the watchdog reset the board"
refuse 5 'reboot: Power down|Kernel panic|CHECK-FAIL' "drill: no power-off, panic or failed check"

# Network: static IPv4/IPv6 checks of boots 1-3, and boot 6 with DHCP.
. "$here/net-boot.sh"

if [ "$fails" -ne 0 ]; then
  echo "boot-test: $fails check(s) failed; logs in $work" >&2
  exit 1
fi
echo "boot-test: 6 boots passed"
