# Pocobelle: the user's entry point.
#   make            both ARM binaries into out/armv5te/ and out/armv7/
#   make test       host tests, lint, ARM builds, ARM tests under qemu-user
#   make setup      install what is missing (Debian 12 packages)
#   make clean

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := firmware

CARGO ?= cargo
OUT   ?= out

ARMV5_TRIPLE := armv5te-unknown-linux-gnueabi
ARMV7_TRIPLE := armv7-unknown-linux-gnueabihf
ARMV5_QEMU   := qemu-arm-static -cpu arm926
ARMV7_QEMU   := qemu-arm-static -cpu cortex-a7
# The binary must fit comfortably on flash and in RAM.
MAX_BINARY_BYTES := 4194304

.PHONY: all firmware setup test test-host lint test-arm test-armv5 test-armv7 \
        test-boot check-buildroot armv5 armv7 clean bench-dns bench-smtp

all: firmware

# Marker so that setup runs once per machine state, and again whenever the
# script changes.
SETUP_STAMP := target/.setup-done
$(SETUP_STAMP): scripts/setup.sh
	@bash scripts/setup.sh
	@mkdir -p $(dir $@) && touch $@

setup:
	@bash scripts/setup.sh
	@mkdir -p $(dir $(SETUP_STAMP)) && touch $(SETUP_STAMP)

firmware: $(OUT)/armv5te/pocobelle $(OUT)/armv7/pocobelle

# Cargo decides what is stale; these rules always ask it.
.PHONY: $(OUT)/armv5te/pocobelle $(OUT)/armv7/pocobelle
$(OUT)/armv5te/pocobelle: $(SETUP_STAMP)
	bash scripts/cross.sh build $(ARMV5_TRIPLE)
	@bash scripts/install-binary.sh target/$(ARMV5_TRIPLE)/release/pocobelle $@ $(MAX_BINARY_BYTES)
$(OUT)/armv7/pocobelle: $(SETUP_STAMP)
	bash scripts/cross.sh build $(ARMV7_TRIPLE)
	@bash scripts/install-binary.sh target/$(ARMV7_TRIPLE)/release/pocobelle $@ $(MAX_BINARY_BYTES)

armv5: $(OUT)/armv5te/pocobelle
armv7: $(OUT)/armv7/pocobelle

test: check-buildroot test-host lint test-arm test-boot

# The Buildroot tree (buildroot/) against board/, rootfs-overlay/ and
# Cross.toml, without Buildroot: a second or less.
check-buildroot:
	bash scripts/check-buildroot.sh

test-host: $(SETUP_STAMP)
	$(CARGO) test --workspace --locked

lint: $(SETUP_STAMP)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Each release binary runs under the oldest CPU of its class, then the
# crate's own test harness is cross-built and run the same way, through
# scripts/qemu-run.sh (a harness qemu-user hangs is run once more).
test-arm: test-armv5 test-armv7

test-armv5: $(OUT)/armv5te/pocobelle
	bash scripts/arm-smoke.sh $< "$(ARMV5_QEMU)"
	POCOBELLE_TEST_RUNNER="$(ARMV5_QEMU)" \
	CARGO_TARGET_ARMV5TE_UNKNOWN_LINUX_GNUEABI_RUNNER="$(CURDIR)/scripts/qemu-run.sh $(ARMV5_QEMU)" \
	  bash scripts/cross.sh test $(ARMV5_TRIPLE)

test-armv7: $(OUT)/armv7/pocobelle
	bash scripts/arm-smoke.sh $< "$(ARMV7_QEMU)"
	POCOBELLE_TEST_RUNNER="$(ARMV7_QEMU)" \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="$(CURDIR)/scripts/qemu-run.sh $(ARMV7_QEMU)" \
	  bash scripts/cross.sh test $(ARMV7_TRIPLE)

# The ARMv7 binary as PID 1 in qemu-system-arm -M virt -m 64 with Debian's
# armmp kernel, booted six times (tests/boot/boot-test.sh says what it checks).
# The host debug binary (already built by test-host's `cargo test`, so no
# second compile in `make test`) fills the DNS cache that boot 2 loads.
HOST_DEBUG_BIN := target/debug/pocobelle
test-boot: $(OUT)/armv7/pocobelle
	$(CARGO) build --locked -p pocobelle
	bash tests/boot/boot-test.sh $< $(HOST_DEBUG_BIN)

# Benchmarks (not tests): side by side with the peers named in the issues,
# one run on one machine. Loopback only.
bench-dns:
	bash scripts/setup.sh bench
	bash bench/dns.sh

bench-smtp:
	bash scripts/setup.sh bench
	bash bench/smtp.sh

clean:
	$(CARGO) clean
	rm -rf $(OUT)
