#!/usr/bin/env bash
# bench/dns.sh: cached DNS answers, pocobelle dns vs Unbound vs dnsmasq.
# Builds the host release binary linked statically, as the board's is
# (so its memory figures hold the same code, not glibc's shared
# libraries), installs the peers if missing (make setup-bench), and prints
# the side-by-side table. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p pocobelle --target "$host"
# Resolvers on CPU 1, dnsperf and the NSD fixture on CPU 0; see the script.
python3 bench/dns_bench.py "${CARGO_TARGET_DIR:-target}/$host/release/pocobelle" bench/results/dns
