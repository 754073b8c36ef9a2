#!/usr/bin/env bash
# scripts/elf-closure.sh ROOT FILE...: prints, one per line, the paths
# (relative to ROOT, an unpacked Debian tree) of the shared libraries
# FILE... load, recursively, each once, and of their program interpreter.
# Exits 1 naming each library not found in ROOT's multiarch and plain
# library directories: the image would carry a program that cannot start.
set -euo pipefail
root=${1:?usage: elf-closure.sh ROOT FILE...}
shift
dirs=(lib/arm-linux-gnueabihf usr/lib/arm-linux-gnueabihf lib/arm-linux-gnueabi usr/lib/arm-linux-gnueabi lib usr/lib)
declare -A seen=()
queue=("$@")
missing=0
for f in "$@"; do
  interp=$(readelf -l "$root/$f" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  if [ -n "$interp" ] && [ -z "${seen[$interp]:-}" ]; then
    seen[$interp]=1
    echo "${interp#/}"
  fi
done
while [ ${#queue[@]} -gt 0 ]; do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  for lib in $(readelf -d "$root/$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${seen[$lib]:-}" ] && continue
    seen[$lib]=1
    found=""
    for d in "${dirs[@]}"; do
      if [ -e "$root/$d/$lib" ]; then found="$d/$lib"; break; fi
    done
    if [ -z "$found" ]; then
      echo "elf-closure: $lib (needed by $f) is not in $root" >&2
      missing=1
      continue
    fi
    echo "$found"
    queue+=("$found")
  done
done
exit $missing
