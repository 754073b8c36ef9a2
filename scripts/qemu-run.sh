#!/usr/bin/env bash
# scripts/qemu-run.sh QEMU [QEMU ARGS...] BINARY [ARGS...]: the runner of
# the ARM test harnesses (make test-arm). qemu-user sometimes deadlocks a
# child forked by a multi-threaded guest before it execs (an emulator bug:
# the child waits on a futex forever; seen about once in five full runs).
# Every harness finishes in under 30 s, so one that has not finished
# within POCOBELLE_QEMU_TIMEOUT seconds (default 240) is killed, with
# everything it started (timeout signals its whole process group), and
# run once more. A test that fails still fails at once.
set -u
limit=${POCOBELLE_QEMU_TIMEOUT:-240}
rc=0
for attempt in 1 2; do
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  if [ "$rc" != 124 ] && [ "$rc" != 137 ]; then
    exit "$rc"
  fi
  echo "qemu-run: no end within ${limit}s (attempt $attempt): $*" >&2
done
exit "$rc"
