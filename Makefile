# Pocobelle: the user's entry point.
#   make            both ARM binaries into out/armv5te/ and out/armv7/
#   make run        boots the qemu-armv7 image in QEMU (64 MB), console here
#   make image      out/$(BOARD)/pocobelle-$(BOARD).img, .bmap, SHA256SUMS
#   make images     the image of every board in board/
#   make flash BOARD=... DEV=/dev/sdX   writes an image to a USB key or SD card
#   make test       host tests, lint, ARM builds, ARM tests under qemu-user,
#                   QEMU boots, the images
#   make setup      install what is missing (Debian 12 packages)
#   make fuzz       every fuzz target for FUZZ_SECONDS (default 300) each
#   make fuzz-long  every fuzz target for FUZZ_RUNS executions (10 million)
#   make size       what holds the bytes of the ARMv5 binary (cargo bloat)
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
        test-boot test-image test-boots check-buildroot armv5 armv7 clean \
        bench-dns bench-smtp image images run flash fuzz fuzz-long test-fuzz test-fuzz-drill size \
        drill drill-reduced

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

# Images: one per board folder (board/<name>/board.conf says which binary,
# kernel, boot method and partition sizes); scripts/image.sh builds one.
BOARD  ?= qemu-armv7
BOARDS := $(sort $(notdir $(patsubst %/board.conf,%,$(wildcard board/*/board.conf))))
board_arch = $(shell . board/$(1)/board.conf && echo $$BOARD_ARCH)

image: $(SETUP_STAMP)
	@test -f board/$(BOARD)/board.conf || { echo "no board $(BOARD); boards: $(BOARDS)"; exit 1; }
	$(MAKE) --no-print-directory $(OUT)/$(call board_arch,$(BOARD))/pocobelle
	bash scripts/image.sh $(BOARD)

images: firmware
	for b in $(BOARDS); do bash scripts/image.sh $$b; done

# Boots the qemu-armv7 image (a copy of it, out/qemu-armv7/run.img) with
# DNS and SMTP forwarded to 127.0.0.1:10053 and :10025.
run: $(SETUP_STAMP)
	$(MAKE) --no-print-directory image BOARD=qemu-armv7
	bash scripts/run.sh qemu-armv7

# The host's release build writes the image: it refuses mounted, system,
# non-removable and too small disks (see `pocobelle flash --help`).
flash: $(SETUP_STAMP)
	@test -n "$(DEV)" || { echo "usage: make flash BOARD=<board> DEV=/dev/sdX"; exit 64; }
	$(MAKE) --no-print-directory image BOARD=$(BOARD)
	$(CARGO) build --release --locked -p pocobelle
	target/release/pocobelle flash $(OUT)/$(BOARD)/pocobelle-$(BOARD).img $(DEV)

test: check-buildroot test-host lint test-arm test-boots test-fuzz-drill
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

# Every board's image built and checked by structure (tests/image/all.sh;
# the default board built twice: byte-identical), then the qemu-armv7
# image booted twice as `make run` boots it, with a power cut in between.
test-image: firmware
	bash tests/image/all.sh

# test-boot and test-image side by side (each QEMU emulates one CPU; the
# machine has two), on binaries built beforehand: each writes its log to
# target/, shown when both have ended.
test-boots: firmware
	$(CARGO) build --locked -p pocobelle
	rc=0; \
	bash tests/boot/boot-test.sh $(OUT)/armv7/pocobelle $(HOST_DEBUG_BIN) >target/test-boot.log 2>&1 & b=$$!; \
	bash tests/image/all.sh >target/test-image.log 2>&1 & i=$$!; \
	wait $$b || rc=1; wait $$i || rc=$$((rc | 2)); \
	cat target/test-boot.log target/test-image.log; \
	[ $$((rc & 1)) = 0 ] || echo "test-boot failed (target/test-boot.log)"; \
	[ $$((rc & 2)) = 0 ] || echo "test-image failed (target/test-image.log)"; \
	exit $$rc

# Benchmarks (not tests): side by side with the peers named in the issues,
# one run on one machine. Loopback only.
bench-dns:
	bash scripts/setup.sh bench
	bash bench/dns.sh

bench-smtp:
	bash scripts/setup.sh bench
	bash bench/smtp.sh

# The outage drill (issue 15, drill/README.md): the qemu-armv7 image cold-
# started into a slow DNS world and a mail backlog, cut hard mid-burst,
# booted again, then the same drill against Postfix + BIND9 on the host
# (capped at what the guest leaves to user space); both columns printed.
# Needs root (it makes a network namespace of its own, with no route out,
# and removes it). drill-reduced (60 messages, short delays,
# one cut) fails on any loss, bounce, 5xx or OOM kill.
drill: $(SETUP_STAMP)
	bash scripts/setup.sh drill
	$(MAKE) --no-print-directory image BOARD=qemu-armv7
	bash drill/run.sh full
	bash drill/run.sh postfix
	python3 drill/drill.py --table $$(ls -t drill/results/*-full.json | head -n 1) \
	  $$(ls -t drill/results/*-postfix.json | head -n 1)

drill-reduced: $(SETUP_STAMP)
	bash scripts/setup.sh drill
	$(MAKE) --no-print-directory image BOARD=qemu-armv7
	bash drill/run.sh reduced

# make test's last step: test-fuzz and drill-reduced side by side (the
# drill's QEMU emulates one CPU; the fuzz build runs at a lower priority,
# FUZZ_NICE), each logging to target/, shown when both have ended. The
# drill needs root (a network namespace): without it, it is reported as
# not run and test-fuzz-drill fails, as a missing test must.
test-fuzz-drill: $(SETUP_STAMP)
	bash scripts/setup.sh drill
	$(MAKE) --no-print-directory image BOARD=qemu-armv7
	rc=0; \
	FUZZ_NICE=15 bash scripts/fuzz.sh test $(TEST_FUZZ_SECONDS) >target/test-fuzz.log 2>&1 & f=$$!; \
	bash drill/run.sh reduced >target/test-drill.log 2>&1 & d=$$!; \
	wait $$f || rc=1; wait $$d || rc=$$((rc | 2)); \
	cat target/test-fuzz.log target/test-drill.log; \
	[ $$((rc & 1)) = 0 ] || echo "test-fuzz failed (target/test-fuzz.log)"; \
	[ $$((rc & 2)) = 0 ] || echo "drill-reduced failed (target/test-drill.log)"; \
	exit $$rc

# Coverage-guided fuzzing of the parsers (fuzz/, scripts/fuzz.sh).
# test-fuzz: each target over its committed corpus (then TEST_FUZZ_SECONDS).
FUZZ_SECONDS ?= 300
FUZZ_RUNS ?= 10000000
# In make test: the committed corpora only (deterministic). Exploration
# (TEST_FUZZ_SECONDS=20) finds new crashes at random, which belongs in
# make fuzz, not in a gate: on 2026-12-05 a 20 s run found a
# spool-recovery bug (now fixed, kept as a regress-* input).
TEST_FUZZ_SECONDS ?= 0
fuzz:
	bash scripts/fuzz.sh run $(FUZZ_SECONDS)

# The long run the README's figures come from: FUZZ_RUNS executions of
# each target (default 10 million), FUZZ_SANITIZER=none for speed.
fuzz-long:
	bash scripts/fuzz.sh long $(FUZZ_RUNS)

test-fuzz:
	bash scripts/fuzz.sh test $(TEST_FUZZ_SECONDS)

# What holds the bytes: cargo bloat on the ARMv5 release code with its
# symbols kept (the `bloat` profile: target/$(ARMV5_TRIPLE)/bloat/), per
# crate then the largest functions, and the sections of the stripped
# binary. Crate attribution after LTO is approximate: generic code is
# counted in the crate that instantiated it; glibc is "[Unknown]".
SIZE_CRATES ?= 25
SIZE_FUNCTIONS ?= 40
size: $(SETUP_STAMP)
	bash scripts/setup.sh size
	bash scripts/cross.sh bloat $(ARMV5_TRIPLE) --crates -n $(SIZE_CRATES)
	bash scripts/cross.sh bloat $(ARMV5_TRIPLE) -n $(SIZE_FUNCTIONS) 2>/dev/null
	arm-linux-gnueabi-strip -o target/$(ARMV5_TRIPLE)/bloat/pocobelle.stripped \
	  target/$(ARMV5_TRIPLE)/bloat/pocobelle
	arm-linux-gnueabi-size -A target/$(ARMV5_TRIPLE)/bloat/pocobelle.stripped
	@printf 'stripped: %s bytes\n' "$$(stat -c %s target/$(ARMV5_TRIPLE)/bloat/pocobelle.stripped)"

clean:
	$(CARGO) clean
	rm -rf $(OUT)
