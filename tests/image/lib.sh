# tests/image/lib.sh: what the image boot tests share, sourced after they
# set work (their scratch directory), img (the disk), timeout_s, uboot,
# dns_port and smtp_port: checks that count failures, waiting for a line
# of a boot's console log, QEMU started as `make run` starts it (with the
# console from a FIFO on fd 3), a power cut, typing on the console.
# shellcheck shell=bash
fails=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; fails=$((fails + 1)); }
expect() { # N PATTERN DESCRIPTION
  if tr -d '\r' <"$work/boot$1.log" | grep -qE "$2"; then ok "boot $1: $3"; else fail "boot $1: $3 (no line matching /$2/)"; fi
}
wait_log() { # N PATTERN SECONDS: until PATTERN is in boot N's log (0) or QEMU ended / time ran out (1)
  local i=0
  while [ "$i" -lt "$3" ]; do
    if tr -d '\r' <"$work/boot$1.log" | grep -qE "$2"; then return 0; fi
    kill -0 "$qpid" 2>/dev/null || return 1
    sleep 1; i=$((i + 1))
  done
  return 1
}
start() { # N: QEMU in the background, console from a FIFO on fd 3
  local n=$1 fifo="$work/console$1.in"
  rm -f "$fifo"; mkfifo "$fifo"; : >"$work/boot$n.log"
  echo "${test_name:-image-boot}: boot $n (log $work/boot$n.log; DNS on tcp 127.0.0.1:$dns_port, SMTP on 127.0.0.1:$smtp_port)"
  timeout --foreground "$timeout_s" qemu-system-arm -M virt -cpu cortex-a7 -m 64 -bios "$uboot" \
    -nographic -no-reboot -monitor none -serial stdio \
    -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$dns_port-:53,hostfwd=tcp:127.0.0.1:$smtp_port-:25" \
    -device virtio-net-device,netdev=net0 \
    -drive file="$img",if=none,format=raw,id=disk -device virtio-blk-device,drive=disk \
    <"$fifo" >"$work/boot$n.log" 2>&1 &
  qpid=$!
  exec 3>"$fifo"
}
power_cut() { # QEMU (timeout's child) killed hard, as a power cut
  pkill -KILL -P "$qpid" qemu-system-arm 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
}
type_line() { printf '%s\n' "$1" >&3; }
