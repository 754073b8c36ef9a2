#!/usr/bin/env bash
# bench/smtp.sh: SMTP relay throughput, fsyncs, spool write size and
# summed PSS, pocobelle mail vs a private Postfix instance, both relaying
# smtp-source's load to smtp-sink on loopback. Builds the host release
# binary and prints the side-by-side table (bench/smtp_bench.py says how
# each figure is measured). Postfix runs from a temp dir with its own
# config and queue; the system's /etc/postfix is not used, and nothing is
# left running. Needs root (Postfix's master drops to user postfix).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p pocobelle
# Relays on CPU 1, smtp-source, smtp-sink and the sampler on CPU 0.
python3 bench/smtp_bench.py target/release/pocobelle bench/results/smtp
