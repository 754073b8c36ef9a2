#!/usr/bin/env bash
# make setup: installs what building and testing Pocobelle needs, and only
# what is missing. Idempotent; says what it installs. Debian 12 package
# names; needs root (or sudo) for apt-get.
set -euo pipefail

# Fuzzing (`setup.sh fuzz`, run by scripts/fuzz.sh for `make fuzz` and
# `make test-fuzz` only, so that `make setup` stays fast): cargo-fuzz,
# pinned to a version that builds with Rust 1.95, and a C++ compiler for
# libFuzzer (libfuzzer-sys builds it from source).
CARGO_FUZZ_VERSION=0.13.2
setup_fuzz() {
  if ! command -v c++ >/dev/null 2>&1; then
    echo "setup: installing g++ (libFuzzer)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends g++ >/dev/null
  fi
  if cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "setup: cargo-fuzz $CARGO_FUZZ_VERSION present"
  else
    echo "setup: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
  fi
}
if [ "${1:-}" = "fuzz" ]; then
  setup_fuzz
  exit 0
fi

# Size measurement (`setup.sh size`, run by `make size` only): cargo-bloat,
# pinned, from crates.io.
CARGO_BLOAT_VERSION=0.12.1
if [ "${1:-}" = "size" ]; then
  if cargo bloat --version 2>/dev/null | grep -Eq "(^| )$CARGO_BLOAT_VERSION\$"; then
    echo "setup: cargo-bloat $CARGO_BLOAT_VERSION present"
  else
    echo "setup: installing cargo-bloat $CARGO_BLOAT_VERSION"
    cargo install cargo-bloat --version "$CARGO_BLOAT_VERSION" --locked
  fi
  exit 0
fi

# Build: Debian's Rust 1.96 with the standard library's source (for
# -Z build-std), the ARM cross linkers and C libraries, user-mode QEMU.
BUILD_PKGS=(
  rustc-web cargo-web rust-web-src
  gcc-arm-linux-gnueabi libc6-dev-armel-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  qemu-user-static
  file
)
# Test peers that no one here wrote.
# swaks (SMTP client), postfix (for smtp-sink / smtp-source; its daemon is
# stopped and disabled below), python3 (smtplib load in the power-cut test),
# python3-dkim (dkimpy: the DKIM peer of firmware/tests/dkim_interop.rs,
# run with /usr/bin/python3).
TEST_PKGS=(
  dnsutils knot-dnsutils
  # the QEMU boot test: system emulator, initramfs, depmod for the armhf
  # kernel's modules.dep, the scratch ext4 image; mkswap/blkid check the
  # swap header.
  qemu-system-arm cpio kmod e2fsprogs util-linux gzip
  # the images (scripts/image.sh, without root or loop mounts): FAT and
  # MBR on files, U-Boot scripts and legacy images, bmap files, fakeroot
  # for root-owned files when not root; U-Boot for QEMU's virt machine
  # (`make run` and the image boot test boot through it).
  mtools dosfstools fdisk u-boot-tools bmap-tools fakeroot u-boot-qemu
  swaks libnet-ssleay-perl libio-socket-ssl-perl postfix python3 python3-dkim
  # Unbound serving DNS-over-TLS on a loopback port: the real DoT peer of
  # firmware/tests/dns_tls_e2e.rs (its daemon is stopped below).
  unbound
  # Network UPS Tools: upsd and the dummy-ups driver on a loopback port,
  # the real peer of firmware/tests/ups_e2e.rs (upsc/upsrw by hand). Their
  # services are disabled below (Debian ships MODE=none in
  # /etc/nut/nut.conf, so they do not start anyway).
  nut-server nut-client
)

# Benchmark peers, for `make bench-dns` and `make bench-smtp` only
# (`setup.sh bench`): the DNS load generator, the two resolvers compared,
# and the authoritative fixture (Unbound comes from TEST_PKGS); strace counts fsyncs and spool writes in
# the SMTP benchmark (Postfix, smtp-source/sink and taskset come from
# TEST_PKGS).
BENCH_PKGS=(
  dnsperf dnsmasq nsd
  strace
)

# The outage drill (`make drill`, `setup.sh drill`): nsd is the world's
# authoritative DNS server (started by the drill in its own namespace;
# its system service is stopped below), iproute2 makes the namespace;
# bind9 is the design deployment's resolver in the Postfix + BIND9 column
# (its service is stopped below too; Postfix comes from TEST_PKGS).
DRILL_PKGS=(
  nsd iproute2 bind9
)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
if [ "${1:-}" = "bench" ]; then
  want+=("${BENCH_PKGS[@]}")
fi
if [ "${1:-}" = "drill" ]; then
  want+=("${DRILL_PKGS[@]}")
fi
if [ -n "${SETUP_EXTRA_PKGS:-}" ]; then
  read -r -a extra <<<"$SETUP_EXTRA_PKGS"
  want+=("${extra[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#want[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: installed ${#missing[@]} packages"
fi

# Peers are started by the tests and benchmarks themselves, on loopback
# and high ports: never leave their system services running.
# NUT: nut-server (upsd), nut-monitor (upsmon; nut-client under
# sysvinit), nut-driver.target (the drivers, nut-driver@<ups>).
for svc in unbound dnsmasq nsd named nut-server nut-monitor nut-client nut-driver.target; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1 && [ -x "/etc/init.d/$svc" ]; then
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done

# The postfix package is only wanted for smtp-sink and smtp-source: its
# daemon must not run or listen on port 25 on a test machine.
if command -v postfix >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO postfix stop >/dev/null 2>&1 || true
  if command -v update-rc.d >/dev/null 2>&1; then $SUDO update-rc.d postfix disable >/dev/null 2>&1 || true; fi
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now postfix >/dev/null 2>&1 || true; fi
fi

# The host toolchain: rustup's cargo when present, else Debian's.
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no rustup cargo on PATH; /usr/bin/cargo (Debian) serves the host build too"
fi
