#!/usr/bin/env bash
# tests/image/all.sh: `make test-image` once both ARM binaries are in out/.
# Builds every board's image (scripts/image.sh), checks each by structure
# (tests/image/structure.sh; qemu-armv7 also built a second time, which
# must give byte-identical files), then boots the qemu-armv7 image twice
# (tests/image/image-boot.sh), then twice more with its own UPS watch
# (tests/image/power-boot.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
boards=$(for f in board/*/board.conf; do basename "$(dirname "$f")"; done)
for b in $boards; do bash scripts/image.sh "$b"; done
for b in $boards; do
  if [ "$b" = qemu-armv7 ]; then REPRODUCE=1 bash tests/image/structure.sh "$b"
  else bash tests/image/structure.sh "$b"; fi
done
bash tests/image/image-boot.sh out/qemu-armv7/pocobelle-qemu-armv7.img
bash tests/image/power-boot.sh out/qemu-armv7/pocobelle-qemu-armv7.img
