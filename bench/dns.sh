#!/usr/bin/env bash
# bench/dns.sh: cached DNS answers, pocobelle dns vs Unbound vs dnsmasq.
# Builds the host release binary, installs the peers if missing (make
# setup-bench), and prints the side-by-side table. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p pocobelle
# Resolvers on CPU 1, dnsperf and the NSD fixture on CPU 0; see the script.
python3 bench/dns_bench.py target/release/pocobelle bench/results/dns
