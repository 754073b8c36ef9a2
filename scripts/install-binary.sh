#!/usr/bin/env bash
# install-binary.sh SRC DEST MAX_BYTES: copies a release binary into out/,
# checking that it is a statically linked 32-bit ARM ELF within the size
# budget.
set -euo pipefail
src=$1 dest=$2 max=$3
desc=$(file -b "$src")
case "$desc" in
  *"ELF 32-bit LSB executable, ARM"*"statically linked"*) ;;
  *) echo "install-binary: $src is not a static 32-bit ARM executable: $desc" >&2; exit 1 ;;
esac
size=$(stat -c %s "$src")
if [ "$size" -gt "$max" ]; then
  echo "install-binary: $src is $size bytes, over the $max-byte budget" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
cp "$src" "$dest.tmp" && mv "$dest.tmp" "$dest"
printf '%s: %s bytes (%s KiB)\n' "$dest" "$size" "$((size / 1024))"
