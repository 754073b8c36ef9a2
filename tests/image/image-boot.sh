#!/usr/bin/env bash
# tests/image/image-boot.sh IMAGE: boots the qemu-armv7 image as a user
# would (`make run`: qemu-system-arm -M virt -m 64, U-Boot from Debian's
# u-boot-qemu, the image as a virtio disk, QEMU's user network with
# restrict=on and DNS and SMTP forwarded to loopback ports), twice, on a
# copy of the image.
#
# Before the first boot the test edits pocobelle.toml on the image's FAT
# partition with mtools, as the README tells a user to for the backup-MX
# role: mail.domains, a route for it (to an address the isolated guest
# cannot reach, so the message stays queued) and one local DNS name.
# Boot 1: through the forwarded ports `dig` gets the local name and
# `swaks` gets a 250 for a message to the domain; on the serial console
# (a FIFO) `pocobelle status` shows dns and mail running and `pocobelle
# mailq` the message; then QEMU is killed hard (a power cut).
# Boot 2 must be a recovery boot: the data partition checked by e2fsck
# (logged), the spool recovered with the message still queued, and
# `pocobelle poweroff` typed on the console ends in a clean power-off.
set -euo pipefail
img_src=$(realpath "${1:?usage: image-boot.sh IMAGE}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
work="$repo/target/image-boot"
timeout_s=${BOOT_TIMEOUT:-420}
uboot=/usr/lib/u-boot/qemu_arm/u-boot.bin
rm -rf "$work"; mkdir -p "$work"
img="$work/disk.img"
cp --sparse=always "$img_src" "$img"
# The "USB key" is 256 MiB larger than the image: the first boot must grow
# the data partition and its file system into it.
truncate -s +256M "$img"

# The boot partition starts at 4 MiB (scripts/image.sh).
fat="$img@@4M"
mcopy -n -i "$fat" ::pocobelle.toml "$work/pocobelle.toml"
sed -i 's/^domains = \[\]$/domains = ["example.test"]/' "$work/pocobelle.toml"
cat >>"$work/pocobelle.toml" <<'EOF'

# Added by tests/image/image-boot.sh, as a user would.
[mail.routes]
"example.test" = "10.0.2.99:25"

[[dns.hosts]]
name = "laptop"
addrs = ["10.0.2.42"]
EOF
mcopy -o -i "$fat" "$work/pocobelle.toml" ::pocobelle.toml

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns_port=$(free_port); smtp_port=$(free_port)

test_name=image-boot
# shellcheck source=tests/image/lib.sh
. "$repo/tests/image/lib.sh"

# --- boot 1 -------------------------------------------------------------
start 1
if wait_log 1 'mail: listening on 0\.0\.0\.0:25' "$timeout_s"; then
  ok "boot 1: U-Boot, kernel, initramfs and init up to mail listening"
  # QEMU's user network with restrict=on drops UDP from the guest other
  # than DHCP, so forwarded UDP gets no reply: the host asks over TCP, and
  # UDP is asked on the console (nslookup, to 127.0.0.1).
  ans=$(dig @127.0.0.1 -p "$dns_port" +tcp laptop.home.arpa A +short +time=5 +tries=3 || true)
  [ "$ans" = 10.0.2.42 ] && ok "boot 1: dig +tcp through the forwarded port: laptop.home.arpa is $ans" ||
    fail "boot 1: dig +tcp laptop.home.arpa gave '$ans'"
  ans=$(dig @127.0.0.1 -p "$dns_port" +tcp nosuch.home.arpa A +time=5 +tries=2 || true)
  grep -q 'status: NXDOMAIN' <<<"$ans" && grep -q 'flags: qr aa' <<<"$ans" &&
    ok "boot 1: dig +tcp: an unknown home.arpa name is NXDOMAIN, authoritative" ||
    fail "boot 1: dig +tcp nosuch.home.arpa: $(grep status <<<"$ans")"
  if swaks --server "127.0.0.1:$smtp_port" --from alice@sender.test --to bob@example.test \
       --header 'Subject: image-boot queued message' --timeout 60 >"$work/swaks.log" 2>&1 &&
     grep -qE '^<- +250 .*(queued|Ok|OK|ok)' "$work/swaks.log"; then
    ok "boot 1: swaks through the forwarded port: 250 for bob@example.test"
  else
    fail "boot 1: swaks: $(tail -n 3 "$work/swaks.log" | tr '\n' ' ')"
  fi
  type_line 'echo; echo CONSOLE-STATUS-BEGIN; pocobelle status; echo CONSOLE-MAILQ-BEGIN; pocobelle mailq; nslookup laptop.home.arpa 127.0.0.1; grep -E "^Mem(Total|Available)" /proc/meminfo; echo CONSOLE-END'
  wait_log 1 '^CONSOLE-END' 60 || true
  # The spool's commit came before the 250, so a power cut now loses nothing.
  power_cut
  exec 3>&-
  tr -d '\r' <"$work/boot1.log" | sed -n '/^CONSOLE-STATUS-BEGIN/,/^CONSOLE-END/p' >"$work/console1.txt"
  grep -qE '^ *dns +running' "$work/console1.txt" && ok "boot 1: status on the console: dns running" ||
    fail "boot 1: status shows no running dns"
  grep -qE '^ *mail +running' "$work/console1.txt" && ok "boot 1: status on the console: mail running" ||
    fail "boot 1: status shows no running mail"
  # The message swaks sent is the one recipient the checks accepted.
  grep -qE '^ +since start: recipients 1 accepted, 0 greylisted, 0 relay denied' "$work/console1.txt" &&
    ok "boot 1: status counts what the anti-spam checks decided (1 recipient accepted)" ||
    fail "boot 1: status: no 'since start: recipients 1 accepted' line"
  grep -q 'bob@example.test' "$work/console1.txt" && ok "boot 1: mailq on the console lists the message" ||
    fail "boot 1: mailq does not list bob@example.test"
  grep -q '^Address: 10.0.2.42' "$work/console1.txt" && ok "boot 1: nslookup over UDP on the board: laptop.home.arpa is 10.0.2.42" ||
    fail "boot 1: nslookup over UDP on the board did not answer 10.0.2.42"
else
  fail "boot 1: mail never listened"
  power_cut; exec 3>&-
fi
sed 's/^/    /' "$work/console1.txt" 2>/dev/null | head -n 30 || true

# A new image's first boot is a normal one: its data partition carries the
# clean-shutdown marker. Judged on `pocobelle status` rather than on init's
# log line: under a loaded host the emulated kernel may print (an RCU stall
# warning, at loglevel 4) into the middle of a console line (CI, stop 18).
if grep -qE '^uptime .* boot normal +last shutdown clean' "$work/console1.txt" &&
   ! tr -d '\r' <"$work/boot1.log" | grep -qE 'shutdown was NOT clean|cannot tell whether the last shutdown'; then
  ok "boot 1: a new image's first boot is a normal one (status: boot normal, last shutdown clean)"
else
  fail "boot 1: a new image's first boot is not a normal one: $(grep -E '^uptime' "$work/console1.txt" || echo 'no status line')"
fi
if tr -d '\r' <"$work/boot1.log" | grep -q 'fsck: checking'; then fail "boot 1: fsck on a new image"; else ok "boot 1: no fsck on a new image"; fi
expect 1 'swap: writing /data/swapfile' "the swap file made at the first boot"
expect 1 'data: partition /dev/disk/by-label/pocodata grown from 320 MiB to 576 MiB to fill the medium' "the data partition grown to the end of the disk"
expect 1 'data: file system on /data grown from 320 MiB to 576 MiB' "its ext4 file system grown online"

# --- boot 2: after the power cut -----------------------------------------
start 2
if wait_log 2 'mail: listening on 0\.0\.0\.0:25' "$timeout_s"; then
  type_line 'echo; echo CONSOLE-MAILQ-BEGIN; pocobelle mailq; pocobelle status; echo CONSOLE-END'
  wait_log 2 '^CONSOLE-END' 60 || true
  tr -d '\r' <"$work/boot2.log" | sed -n '/^CONSOLE-MAILQ-BEGIN/,/^CONSOLE-END/p' >"$work/console2.txt"
  grep -q 'bob@example.test' "$work/console2.txt" && ok "boot 2: the message is still queued after the power cut" ||
    fail "boot 2: mailq does not list bob@example.test"
  grep -qE 'boot recovery +last shutdown NOT clean' "$work/console2.txt" &&
    ok "boot 2: status says it is a recovery boot after an unclean shutdown" || fail "boot 2: status does not say recovery boot"
  grep -qE '^fsck +data partition: (clean|errors corrected)' "$work/console2.txt" &&
    ok "boot 2: status gives the fsck result" || fail "boot 2: status gives no fsck result"
  grep -qE '^spool +spool recovered 1 message' "$work/console2.txt" &&
    ok "boot 2: status gives what the spool recovery found" || fail "boot 2: status gives no spool recovery"
  grep -q '^power  no UPS configured' "$work/console2.txt" &&
    ok "boot 2: status: no UPS configured" || fail "boot 2: status has no power line"
  type_line 'pocobelle poweroff'
fi
rc=0; wait "$qpid" || rc=$?
exec 3>&-
[ "$rc" = 124 ] && fail "boot 2: did not power off within ${timeout_s}s"
expect 2 'last shutdown was NOT clean' "the power cut is seen: recovery boot"
expect 2 'fsck: checking /dev/disk/by-label/pocodata' "e2fsck of the data partition"
# After a hard power cut e2fsck may replay the ext4 journal and exit 1
# ("errors corrected"): a CI run under load did (stop 18).
expect 2 'fsck: /dev/disk/by-label/pocodata( is clean|: errors corrected \(status [12]\))' "fsck result logged"
expect 2 'spool recovered: 1 message' "the spool recovery found the message"
expect 2 'boot: RECOVERY BOOT' "the boot log says it is a recovery boot"
expect 2 'swap: /data/swapfile active' "swap file reused"
expect 2 'clean-shutdown marker written' "clean shutdown at poweroff"
expect 2 'reboot: Power down' "powered off by itself"
if tr -d '\r' <"$work/boot2.log" | grep -q 'grown from'; then fail "boot 2: grew again"; else ok "boot 2: nothing left to grow"; fi
# The partition table on the disk itself, read by sfdisk after the boots.
sfdisk -d "$img" | grep -qE 'img3 : start= +172032, size= +1179648, type=83' &&
  ok "the partition table on the disk: partition 3 is 576 MiB, to the end" ||
  fail "partition 3 on the disk: $(sfdisk -d "$img" | grep img3)"
dd if="$img" of="$work/data.img" bs=1M skip=84 count=576 status=none
blocks=$(dumpe2fs -h "$work/data.img" 2>/dev/null | sed -n 's/^Block count: *//p')
[ "$blocks" = 147456 ] && e2fsck -fn "$work/data.img" >"$work/e2fsck.log" 2>&1 &&
  ok "the data file system on the disk: 576 MiB (147456 blocks), e2fsck -fn clean" ||
  fail "the data file system on the disk: $blocks blocks; $(tail -n 3 "$work/e2fsck.log" | tr '\n' ' ')"
rm -f "$work/data.img"
for n in 1 2; do
  if tr -d '\r' <"$work/boot$n.log" | grep -qE 'Kernel panic|init: PANIC'; then fail "boot $n: panic"; fi
done

if [ "$fails" -ne 0 ]; then
  echo "image-boot: $fails check(s) failed; logs in $work" >&2
  exit 1
fi
echo "image-boot: 2 boots of the qemu-armv7 image passed"
