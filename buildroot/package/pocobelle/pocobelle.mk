################################################################################
#
# pocobelle
#
################################################################################

# The Pocobelle source tree this BR2_EXTERNAL tree lives in (buildroot/ is
# one of its folders): a local package, rsynced into the build directory.
POCOBELLE_SITE = $(BR2_EXTERNAL_POCOBELLE_PATH)/..
POCOBELLE_SITE_METHOD = local
# The workspace version (Cargo.toml, [workspace.package]).
POCOBELLE_VERSION = $(or $(shell sed -n 's/^version = "\([^"]*\)"/\1/p' $(POCOBELLE_SITE)/Cargo.toml 2>/dev/null | head -n1),custom)
POCOBELLE_LICENSE = Apache-2.0 or MIT
# The crate (firmware/) inside the workspace; Cargo.lock is at the
# workspace root, one level up, and cargo finds it there.
POCOBELLE_SUBDIR = firmware
POCOBELLE_CARGO_BUILD_OPTS = --bin pocobelle

# Not worth copying: build output, the image builder's downloads, and
# this tree (with any Buildroot output directory made inside it).
POCOBELLE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/target --exclude=/out --exclude=/buildroot

# Links to the multi-call binary, as in the project's rootfs-overlay/
# (scripts/check-buildroot.sh compares the two lists). BusyBox installs
# some of these names too: pocobelle is installed after it.
POCOBELLE_APPLET_LINKS = \
	sbin/init sbin/poweroff sbin/reboot sbin/halt sbin/shutdown \
	usr/sbin/sendmail usr/bin/mailq

ifeq ($(BR2_PACKAGE_BUSYBOX),y)
POCOBELLE_DEPENDENCIES += busybox
endif

# The project's release profile (Cargo.toml) sizes the binary for a 64 MB
# board: opt-level "s", LTO, one codegen unit. Buildroot's cargo
# infrastructure sets every profile key from BR2_OPTIMIZE_* and
# BR2_ENABLE_LTO; these, set after it, keep the project's choice.
# Linked statically like the project's own builds (Buildroot's own
# RUSTFLAGS for 32-bit ARM are kept). build.rs asks git for the revision
# `pocobelle --version` reports: point it at the source tree's
# repository, not at whatever repository holds the build directory.
POCOBELLE_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_OPT_LEVEL="s" \
	CARGO_PROFILE_RELEASE_LTO="true" \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS="1" \
	CARGO_PROFILE_RELEASE_PANIC="abort" \
	CARGO_TARGET_$(call UPPERCASE,$(RUSTC_TARGET_NAME))_RUSTFLAGS="-Clink-arg=-Wl,--allow-multiple-definition -Ctarget-feature=+crt-static" \
	GIT_DIR=$(POCOBELLE_SITE)/.git \
	GIT_WORK_TREE=$(POCOBELLE_SITE)

# A downloaded cargo package gets its dependencies vendored at download
# time (support/download/cargo-post-process); a local one is never
# downloaded, so vendor them here, the same way, before the build (host
# cargo is ready by then). This step needs the network, as a download
# would; the crates land in Buildroot's cargo home in DL_DIR. The
# generated .cargo/config.toml replaces the project's in the build copy:
# that one names Debian's cross linkers and QEMU runners, and Buildroot
# passes its own linker.
define POCOBELLE_CARGO_VENDOR
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(TARGET_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --manifest-path Cargo.toml --locked VENDOR \
		> $(@D)/.cargo/config.toml.vendor
	mv $(@D)/.cargo/config.toml.vendor $(@D)/.cargo/config.toml
endef
POCOBELLE_PRE_CONFIGURE_HOOKS += POCOBELLE_CARGO_VENDOR

# cargo install would put the binary in /usr/bin: install it where the
# kernel and the applet links expect it, then the links.
define POCOBELLE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/pocobelle \
		$(TARGET_DIR)/bin/pocobelle
	for l in $(POCOBELLE_APPLET_LINKS); do \
		mkdir -p $(TARGET_DIR)/$$(dirname $$l) && \
		ln -sfn /bin/pocobelle $(TARGET_DIR)/$$l || exit 1; \
	done
endef

$(eval $(cargo-package))
