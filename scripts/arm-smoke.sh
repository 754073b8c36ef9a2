#!/usr/bin/env bash
# arm-smoke.sh BINARY "QEMU CMD": runs a release ARM binary under user-mode
# QEMU the way a user meets it: --version, the multi-call symlink, the
# self-test (config, DNS over UDP, TLS with ring), and check-config on the
# shipped example and on a file with a misspelt key.
set -euo pipefail
bin=$1
read -r -a qemu <<<"$2"
run() { "${qemu[@]}" "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run "$bin" --version | tee "$tmp/version"
grep -q 'target arm' "$tmp/version"

ln -s "$(realpath "$bin")" "$tmp/check-config"
run "$tmp/check-config" rootfs-overlay/etc/pocobelle.toml

printf '[log]\nlevel = "info"\n\n[system]\nhostnme = "box"\n' >"$tmp/typo.toml"
if run "$bin" check-config "$tmp/typo.toml" 2>"$tmp/err"; then
  echo "arm-smoke: a misspelt key was accepted" >&2; exit 1
fi
cat "$tmp/err"
grep -q 'typo.toml:5:' "$tmp/err"

run "$bin" self-test
echo "arm-smoke: $bin ok under ${qemu[*]}"
