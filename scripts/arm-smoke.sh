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

# Every applet symlink in the overlay points at /bin/pocobelle and names an
# applet that the binary dispatches to by its link name.
applets=$(run "$bin" --list)
links=$(cd rootfs-overlay && find . -type l | sort)
[ -n "$links" ] || { echo "arm-smoke: no applet symlinks in rootfs-overlay" >&2; exit 1; }
for l in $links; do
  name=$(basename "$l")
  [ "$(readlink "rootfs-overlay/$l")" = /bin/pocobelle ] || { echo "arm-smoke: $l does not point at /bin/pocobelle" >&2; exit 1; }
  grep -qx "$name" <<<"$applets" || { echo "arm-smoke: $l names no applet" >&2; exit 1; }
  ln -s "$(realpath "$bin")" "$tmp/$name"
  run "$tmp/$name" --help >"$tmp/help" 2>&1 || true
  head -n 1 "$tmp/help" | grep -qE "^Usage: (pocobelle )?$name\b" || { echo "arm-smoke: $name --help did not reach its applet:" >&2; cat "$tmp/help" >&2; exit 1; }
done

run "$bin" self-test
echo "arm-smoke: $bin ok under ${qemu[*]}"
