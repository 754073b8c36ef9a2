#!/usr/bin/env bash
# drill/run.sh [full|reduced] [drill.py options]: the outage drill (issue 15)
# in a network namespace of its own, removed on exit (even on failure).
#
# The namespace holds a bridge br0 with the world's addresses (10.77.0.1
# DNS relay and probe, .11-.14 the senders, .20 the laptop, .30 the
# senders' MX) and tap0, QEMU's end (the board is 10.77.0.2). It has no
# route out and no link to the host's interfaces: nothing leaves the
# machine. Needs root (ip netns, tap) and the packages of
# `scripts/setup.sh drill`; uses out/qemu-armv7/pocobelle-qemu-armv7.img
# (make image).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-full}
shift || true
reduced_opts=(--messages 60 --max-size 262144 --delay 1 --slow 4 --laptop-after 60
              --settle 10 --retry 3 --dot-timeout 45 --greeting-timeout 45 --deadline 600)
case "$variant" in
  full) opts=(--name full) ;;
  # The second column: Postfix + BIND9 on the host at the board's address.
  postfix) opts=(--name postfix --column postfix) ;;
  postfix-reduced) opts=(--name postfix-reduced --column postfix "${reduced_opts[@]}") ;;
  # About 60 messages, short delays, one cut, a laptop that comes on after
  # 2 minutes; exits non-zero on any loss, bounce, 5xx or OOM kill.
  reduced) opts=(--name reduced "${reduced_opts[@]}" --strict) ;;
  *) echo "usage: drill/run.sh [full|reduced|postfix|postfix-reduced] [drill.py options]" >&2; exit 64 ;;
esac
[ "$(id -u)" = 0 ] || { echo "drill: needs root (network namespace, tap device)" >&2; exit 1; }
img="$repo/out/qemu-armv7/pocobelle-qemu-armv7.img"
[ -f "$img" ] || { echo "drill: no $img (make image)" >&2; exit 1; }
tools=(nsd nsd-checkconf qemu-system-arm mcopy debugfs dig ip)
case "$variant" in postfix*) tools+=(named postfix) ;; esac
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "drill: $tool missing (bash scripts/setup.sh drill)" >&2; exit 1; }
done
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

ns="pbdrill$$"
cleanup() {
  # QEMU and the world's processes run in the namespace: end them (by
  # their PIDs, as listed by the kernel for this namespace), then remove it.
  local pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge forward_delay 0 stp_state 0
ip -n "$ns" tuntap add dev tap0 mode tap
ip -n "$ns" link set tap0 master br0
for a in 10.77.0.1 10.77.0.11 10.77.0.12 10.77.0.13 10.77.0.14 10.77.0.20 10.77.0.30; do
  ip -n "$ns" addr add "$a/24" dev br0
done
case "$variant" in
  postfix*)
    # The board's address is the host stack's; Postfix's resolver is its
    # named (ip netns exec bind-mounts this over /etc/resolv.conf).
    ip -n "$ns" addr add 10.77.0.2/24 dev br0
    mkdir -p "/etc/netns/$ns"
    echo "nameserver 10.77.0.2" >"/etc/netns/$ns/resolv.conf" ;;
esac
ip -n "$ns" link set tap0 up
ip -n "$ns" link set br0 up
echo "drill: namespace $ns (br0 10.77.0.0/24, tap0 for the board at 10.77.0.2; no route out)"
# In the background and waited for, so that a signal runs the traps at once.
ip netns exec "$ns" nice -n 10 "$py" "$repo/drill/drill.py" "${opts[@]}" "$@" &
wait $!
