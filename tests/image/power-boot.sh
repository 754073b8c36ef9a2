#!/usr/bin/env bash
# tests/image/power-boot.sh IMAGE: the board's own UPS watch, in the
# qemu-armv7 image booted as `make run` boots it (qemu-system-arm -M virt
# -m 64, isolated user network), on a copy of the image.
#
# The image's pocobelle.toml gets an [ups] table (local mode, NUT's
# dummy-ups driver playing /data/ups.dev; a 10 s settle time), edited on
# the FAT partition with mtools as a user would; ups.dev is put on the
# data partition with debugfs. The UPS's state is then changed from the
# serial console by replacing ups.dev, as NUT's own tests drive dummy-ups.
# Boot 1: on battery at 20 % charge: mail is held (log and status); mains
#   back: mail starts once the settle time has passed; on battery again:
#   the on-battery writeback settings; low battery: a clean shutdown that
#   asks the UPS (the driver's -k) to cut the power, and QEMU powers off
#   by itself.
# Boot 2: the last shutdown was clean; status shows the power on line;
#   `pocobelle poweroff`.
set -euo pipefail
img_src=$(realpath "${1:?usage: power-boot.sh IMAGE}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
work="$repo/target/power-boot"
timeout_s=${BOOT_TIMEOUT:-420}
uboot=/usr/lib/u-boot/qemu_arm/u-boot.bin
rm -rf "$work"; mkdir -p "$work"
img="$work/disk.img"
cp --sparse=always "$img_src" "$img"

# The UPS as dummy-ups reads it (NUT's .dev format).
dev() { # STATUS CHARGE RUNTIME
  printf 'ups.mfr: Pocobelle test\nups.model: dummy\nups.status: %s\nbattery.charge: %s\nbattery.runtime: %s\n' "$1" "$2" "$3"
}

# The boot partition starts at 4 MiB, the data partition at 84 MiB
# (scripts/image.sh: 4 MiB free, 32 MiB boot, 48 MiB root, 320 MiB data).
fat="$img@@4M"
mcopy -n -i "$fat" ::pocobelle.toml "$work/pocobelle.toml"
cat >>"$work/pocobelle.toml" <<'EOF'

# Added by tests/image/power-boot.sh, as a user with a UPS would (the
# dummy-ups driver stands in for usbhid-ups).
[ups]
mode = "local"
driver = "dummy-ups"
port_path = "/data/ups.dev"
poll_interval_secs = 2
dead_time_secs = 10
start_min_charge = 30
settle_time_secs = 10
EOF
mcopy -o -i "$fat" "$work/pocobelle.toml" ::pocobelle.toml
dd if="$img" of="$work/data.img" bs=1M skip=84 count=320 status=none
dev "OB DISCHRG" 20 400 >"$work/ups.dev"
debugfs -w -R "write $work/ups.dev ups.dev" "$work/data.img" >/dev/null 2>&1
debugfs -R "stat /ups.dev" "$work/data.img" 2>/dev/null | grep -q '^Inode:' ||
  { echo "power-boot: cannot put ups.dev on the data partition" >&2; exit 1; }
dd if="$work/data.img" of="$img" bs=1M seek=84 conv=notrunc status=none
rm -f "$work/data.img"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns_port=$(free_port); smtp_port=$(free_port)
test_name=power-boot
# shellcheck source=tests/image/lib.sh
. "$repo/tests/image/lib.sh"

# The UPS changes: ups.dev replaced in one rename, from the console.
set_ups() { # STATUS CHARGE RUNTIME
  type_line "printf '$(dev "$1" "$2" "$3" | sed 's/$/\\n/' | tr -d '\n')' >/data/ups.dev.new && mv /data/ups.dev.new /data/ups.dev && echo UPS-SET-$4"
}

# --- boot 1 -------------------------------------------------------------
start 1
if wait_log 1 'supervisor: mail held: power: ON BATTERY, 20 %' "$timeout_s"; then
  ok "boot 1: booted on battery at 20 %: mail held"
  wait_log 1 'supervisor: dns started' 120 || true
  sleep 3
  # shellcheck disable=SC2016 # expanded by the guest's shell
  type_line 'echo; echo CONSOLE-STATUS-BEGIN; pocobelle status; pocobelle ups status; for p in /proc/[0-9]*; do c=$(tr "\0" " " <$p/cmdline 2>/dev/null); case "$c" in */lib/nut/*|"/bin/pocobelle ups "*) echo "MEM $c: $(grep -E "^(RssAnon|RssFile|RssShmem)" $p/status | tr -s " \t\n" " ")";; esac; done; echo CONSOLE-END'
  wait_log 1 '^CONSOLE-END' 60 || true
  tr -d '\r' <"$work/boot1.log" | sed -n '/^CONSOLE-STATUS-BEGIN/,/^CONSOLE-END/p' >"$work/console1.txt"
  grep -qE '^power +ON BATTERY, 20 %' "$work/console1.txt" && ok "boot 1: status: power ON BATTERY, 20 %" ||
    fail "boot 1: status has no ON BATTERY power line"
  grep -qE '^ *mail +held .*power' "$work/console1.txt" && ok "boot 1: status: mail held, with the reason" ||
    fail "boot 1: status does not show mail held"
  grep -qE '^ *(nut-driver|upsd|ups) +running' "$work/console1.txt" && ok "boot 1: status: NUT's driver, upsd and the monitor run" ||
    fail "boot 1: status shows no UPS services running"
  if tr -d '\r' <"$work/boot1.log" | grep -q 'mail: listening'; then fail "boot 1: mail listened while held"; fi
  # What the UPS watch costs in RAM (private = RssAnon; the rest is
  # shared text: glibc for NUT, the pocobelle binary for the monitor).
  grep '^MEM ' "$work/console1.txt" | sed 's/^MEM /  memory: /' || true
  # Mains back: mail waits for the settle time (10 s), then starts.
  set_ups "OL CHRG" 25 500 mains
  if wait_log 1 'supervisor: mail released' 90 && wait_log 1 'mail: listening on 0\.0\.0\.0:25' 120; then
    ok "boot 1: mains back: mail released after the settle time and listening"
  else
    fail "boot 1: mail not released after mains came back"
  fi
  # Power fails again: on battery (mail keeps running), then low battery.
  set_ups "OB DISCHRG" 60 900 battery
  wait_log 1 'power: on-battery writeback settings' 60 && ok "boot 1: on battery: writeback batched harder" ||
    fail "boot 1: no on-battery writeback settings"
  set_ups "OB DISCHRG LB" 9 60 low
  wait_log 1 'power: .*LOW BATTERY.*: shutting down' 60 && ok "boot 1: low battery: init shuts down" ||
    fail "boot 1: no shutdown on low battery"
else
  fail "boot 1: mail was never held on battery"
  power_cut
fi
rc=0; wait "$qpid" || rc=$?
exec 3>&-
[ "$rc" = 124 ] && fail "boot 1: did not power off within ${timeout_s}s"
expect 1 'ups: watching 127\.0\.0\.1:3493' "init watches the board's own upsd"
expect 1 'supervisor: nut-driver started' "NUT's driver (dummy-ups) supervised"
expect 1 'supervisor: upsd started' "NUT's upsd supervised"
expect 1 'power: asking the UPS to cut the power: /lib/nut/dummy-ups -a ups -k' "the UPS asked to cut the power (driver -k)"
expect 1 'clean-shutdown marker written' "the power shutdown is clean"
expect 1 'reboot: Power down' "powered off by itself"
# Mail was not started before mains was back.
held=$(tr -d '\r' <"$work/boot1.log" | grep -n 'supervisor: mail released' | head -n1 | cut -d: -f1)
listen=$(tr -d '\r' <"$work/boot1.log" | grep -n 'mail: listening' | head -n1 | cut -d: -f1)
mains=$(tr -d '\r' <"$work/boot1.log" | grep -n 'power: on line' | head -n1 | cut -d: -f1)
[ -n "$held" ] && [ -n "$listen" ] && [ -n "$mains" ] && [ "$mains" -lt "$held" ] && [ "$held" -lt "$listen" ] &&
  ok "boot 1: order: mains back, then mail released, then mail listening" ||
  fail "boot 1: order of mains ($mains), release ($held), listening ($listen)"

# --- boot 2: after the power shutdown -------------------------------------
# The UPS as it is when the power comes back.
dd if="$img" of="$work/data.img" bs=1M skip=84 count=320 status=none
dev "OL" 100 1800 >"$work/ups.dev"
debugfs -w -R "rm ups.dev" "$work/data.img" >/dev/null 2>&1
debugfs -w -R "write $work/ups.dev ups.dev" "$work/data.img" >/dev/null 2>&1
dd if="$work/data.img" of="$img" bs=1M seek=84 conv=notrunc status=none
rm -f "$work/data.img"
start 2
if wait_log 2 'mail: listening on 0\.0\.0\.0:25' "$timeout_s"; then
  ok "boot 2: on line at 100 %: mail starts"
  type_line 'echo; echo CONSOLE-STATUS-BEGIN; pocobelle status; echo CONSOLE-END'
  wait_log 2 '^CONSOLE-END' 60 || true
  tr -d '\r' <"$work/boot2.log" | sed -n '/^CONSOLE-STATUS-BEGIN/,/^CONSOLE-END/p' >"$work/console2.txt"
  grep -qE 'boot normal +last shutdown clean' "$work/console2.txt" && ok "boot 2: status: normal boot, last shutdown clean" ||
    fail "boot 2: status does not say the last shutdown was clean"
  grep -qE '^power +on line \(mains\), 100 %' "$work/console2.txt" && ok "boot 2: status: power on line, 100 %" ||
    fail "boot 2: status has no on-line power line"
  type_line 'pocobelle poweroff'
else
  fail "boot 2: mail never listened"
  power_cut
fi
rc=0; wait "$qpid" || rc=$?
exec 3>&-
[ "$rc" = 124 ] && fail "boot 2: did not power off within ${timeout_s}s"
if tr -d '\r' <"$work/boot2.log" | grep -q 'fsck: checking'; then fail "boot 2: fsck after a clean power shutdown"; else ok "boot 2: no fsck"; fi
if tr -d '\r' <"$work/boot2.log" | grep -q 'asking the UPS to cut'; then fail "boot 2: a poweroff by hand cut the UPS's power"; else ok "boot 2: a poweroff by hand leaves the UPS alone"; fi
for n in 1 2; do
  if tr -d '\r' <"$work/boot$n.log" | grep -qE 'Kernel panic|init: PANIC'; then fail "boot $n: panic"; fi
done

if [ "$fails" -ne 0 ]; then
  echo "power-boot: $fails check(s) failed; logs in $work" >&2
  exit 1
fi
echo "power-boot: 2 boots of the qemu-armv7 image with its own UPS watch passed"
