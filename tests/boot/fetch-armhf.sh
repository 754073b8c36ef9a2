#!/usr/bin/env bash
# tests/boot/fetch-armhf.sh CACHE_DIR: the Debian bookworm armhf packages
# the QEMU boot test needs (the armmp kernel, busybox-static,
# e2fsck-static, NUT), with the same list the qemu-armv7 image takes, so that
# the boot test and `make image` share one download
# (scripts/fetch-debs.sh says how).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=board/common/debs.sh
. "$here/../../board/common/debs.sh"
# shellcheck disable=SC2086 # word lists
exec bash "$here/../../scripts/fetch-debs.sh" "${1:?usage: fetch-armhf.sh CACHE_DIR}" armhf linux-image-armmp \
  $BASE_DEBS $NUT_DEBS
