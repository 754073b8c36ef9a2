#!/bin/sh
# Runs inside the QEMU guest as the supervised service `checker` (started
# after `sleeper` reported primed). Prints one `CHECK: ... ok` or
# `CHECK-FAIL: ...` line per check (init copies them to the console as
# `checker: CHECK: ...`, which boot-test.sh reads); then asks init to power off.
ok() { echo "CHECK: $* ok"; }
bad() { echo "CHECK-FAIL: $*"; }

for m in /proc /sys /dev /dev/pts /run /tmp /data /sys/fs/cgroup; do
  if grep -q "^[^ ]* $m " /proc/mounts; then ok "mount $m"; else bad "mount $m missing"; fi
done
if grep -q '^/dev/vda /data ext4 [^ ]*noatime[^ ]*commit=7' /proc/mounts \
   || grep -q '^/dev/vda /data ext4 .*noatime.*commit=7' /proc/mounts; then
  ok "data noatime commit=7"
else
  bad "data mount options: $(grep ' /data ' /proc/mounts)"
fi
if grep -q '^/data/swapfile ' /proc/swaps; then ok "swap active"; else bad "swap: $(cat /proc/swaps)"; fi
mode=$(stat -c %a /data/swapfile 2>/dev/null)
[ "$mode" = 600 ] && ok "swapfile mode 0600" || bad "swapfile mode $mode"

# Static IPv4 from [init.network]: the address and the default route.
if ip -4 addr show eth0 2>/dev/null | grep -q 'inet 10.0.2.15/24'; then ok "eth0 10.0.2.15/24"; else bad "eth0: $(ip -4 addr show eth0 2>&1)"; fi
if awk '$1 == "eth0" && $2 == "00000000" && $3 == "0202000A" { f = 1 } END { exit !f }' /proc/net/route; then
  ok "default route via 10.0.2.2"
else
  bad "routes: $(cat /proc/net/route)"
fi
. /test/check-net.sh

v() { cat /proc/sys/vm/$1; }
[ "$(v swappiness)" = 10 ] && ok "sysctl swappiness" || bad "swappiness $(v swappiness)"
[ "$(v min_free_kbytes)" -ge 512 ] && ok "sysctl min_free_kbytes $(v min_free_kbytes)" || bad "min_free_kbytes $(v min_free_kbytes)"
bg=$(v dirty_background_bytes); hard=$(v dirty_bytes)
if [ "$bg" -ge 524288 ] && [ $((bg % 131072)) = 0 ] && [ "$hard" -gt "$bg" ]; then
  ok "sysctl dirty_background_bytes $bg dirty_bytes $hard"
else
  bad "dirty_background_bytes $bg dirty_bytes $hard"
fi
[ "$(v dirty_writeback_centisecs)" = 1500 ] && ok "sysctl dirty_writeback_centisecs" || bad "dirty_writeback_centisecs $(v dirty_writeback_centisecs)"

# An orphan: its parent exits at once, so it is reparented to PID 1,
# which must reap it when it exits.
sh -c 'sleep 1 & echo $! > /tmp/orphan'
opid=$(cat /tmp/orphan)
sleep 3
if [ -e /proc/$opid ]; then bad "orphan $opid not reaped: $(grep State /proc/$opid/status)"; else ok "orphan $opid reaped"; fi

# The supervised sleeper: own user, oom_score_adj, memory ceiling; killed,
# it is restarted with a new pid.
p1=$(cat /tmp/sleeper.pid)
uid=$(awk '/^Uid:/ {print $2}' /proc/$p1/status)
[ "$uid" = 1000 ] && ok "sleeper runs as uid 1000" || bad "sleeper uid $uid"
[ "$(cat /proc/$p1/oom_score_adj)" = 300 ] && ok "sleeper oom_score_adj 300" || bad "oom_score_adj $(cat /proc/$p1/oom_score_adj)"
mm=$(cat /sys/fs/cgroup/pocobelle-sleeper/memory.max 2>/dev/null)
[ "$mm" = 8388608 ] && ok "sleeper memory.max 8 MiB" || bad "memory.max '$mm'"
grep -qx "$p1" /sys/fs/cgroup/pocobelle-sleeper/cgroup.procs && ok "sleeper in its cgroup" || bad "sleeper not in its cgroup"
kill -9 "$p1"
i=0; p2=$p1
while [ $i -lt 20 ]; do
  sleep 1; i=$((i + 1))
  p2=$(cat /tmp/sleeper.pid)
  if [ "$p2" != "$p1" ] && [ -e /proc/$p2 ]; then break; fi
done
if [ "$p2" != "$p1" ] && [ -e /proc/$p2 ]; then ok "sleeper restarted (pid $p1 -> $p2)"; else bad "sleeper not restarted"; fi

/bin/pocobelle status > /tmp/status 2>&1
cat /tmp/status
if grep -q '^sleeper *running' /tmp/status && grep -q 'last shutdown' /tmp/status; then ok "status"; else bad "status"; fi
awk 'length > 80 { exit 1 }' /tmp/status && ok "status fits 80 columns" || bad "status wider than 80 columns"

/bin/pocobelle log > /tmp/log 2>&1
if grep -q '^sleeper: sleeper says hello' /tmp/log && grep -q 'supervisor: sleeper is primed' /tmp/log; then
  ok "log ring"
else
  bad "log ring: $(tail -n 3 /tmp/log)"
fi

echo "CHECK: done"
/bin/pocobelle poweroff
