#!/usr/bin/env bash
# scripts/cross.sh build|test|bloat TRIPLE [cargo args...]
#
# Builds (release), tests, or measures (`cargo bloat` on the release code
# with symbols kept: the `bloat` profile) the firmware crate for an ARM
# triple, choosing
# the route by itself:
#  1. the active toolchain already has the target's standard library (a
#     user who ran `rustup target add`): plain `cargo --target`;
#  2. otherwise a toolchain that has the standard library's source
#     (Debian's rustc-web + rust-web-src, or rustup's rust-src): the same
#     command with -Z build-std.
# Runs nothing but cargo; linkers and runners come from .cargo/config.toml.
set -euo pipefail

mode=${1:?usage: cross.sh build|test|bloat TRIPLE [args]}
triple=${2:?usage: cross.sh build|test|bloat TRIPLE [args]}
shift 2

has_target_std() { # rustc
  local sysroot
  sysroot=$("$1" --print sysroot 2>/dev/null) || return 1
  compgen -G "$sysroot/lib/rustlib/$triple/lib/libstd-*.rlib" >/dev/null
}
has_std_source() { # rustc
  local sysroot
  sysroot=$("$1" --print sysroot 2>/dev/null) || return 1
  [ -f "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ]
}

# The release build's standard library leaves out the `backtrace`
# feature: the symbolizer that prints a panic's backtrace when
# RUST_BACKTRACE is set (gimli, addr2line, rustc-demangle, miniz_oxide),
# useless in a stripped binary, is 161 KiB of ARMv5 text. Panic messages
# stay. (Cargo's default list for -Z build-std includes backtrace.)
release_std_features=panic-unwind
case "$mode" in
  build) cmd=(build --release) ; std=std,panic_abort ; features=$release_std_features ;;
  test)  cmd=(test)            ; std=std,panic_abort,panic_unwind,test ; features= ;;
  # cargo-bloat runs `cargo build` itself, with the `cargo` and `rustc`
  # found on PATH (below: the toolchain chosen here comes first).
  bloat) cmd=(bloat --profile bloat --bin pocobelle) ; std=std,panic_abort ; features=$release_std_features ;;
  *) echo "cross.sh: unknown mode $mode" >&2; exit 64 ;;
esac

if command -v rustc >/dev/null && has_target_std rustc; then
  exec cargo "${cmd[@]}" --locked --target "$triple" "$@"
fi
for rustc in rustc /usr/bin/rustc; do
  command -v "$rustc" >/dev/null || continue
  if has_std_source "$rustc"; then
    dir=$(dirname "$(command -v "$rustc")")
    cargo="$dir/cargo"
    [ -x "$cargo" ] || cargo=cargo
    # Debian's cargo must drive Debian's rustc, not rustup's proxy that
    # comes first on PATH.
    export RUSTC="$(command -v "$rustc")"
    [ -x "$dir/rustdoc" ] && export RUSTDOC="$dir/rustdoc"
    zflags=(-Z build-std="$std")
    [ -n "$features" ] && zflags+=(-Z build-std-features="$features")
    if [ "$mode" = bloat ]; then
      bloat=$(command -v cargo-bloat) || {
        echo "cross.sh: no cargo-bloat; run 'bash scripts/setup.sh size'" >&2; exit 1; }
      export PATH="$dir:$PATH" RUSTC_BOOTSTRAP=1
      exec "$bloat" "${cmd[@]}" --locked --target "$triple" "${zflags[@]}" "$@"
    fi
    export RUSTC_BOOTSTRAP=1
    exec "$cargo" "${cmd[@]}" --locked --target "$triple" "${zflags[@]}" "$@"
  fi
done
echo "cross.sh: no toolchain has the standard library for $triple or its source; run 'make setup'" >&2
exit 1
