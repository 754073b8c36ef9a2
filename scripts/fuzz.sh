#!/usr/bin/env bash
# scripts/fuzz.sh run|test [SECONDS] [TARGET...]
# scripts/fuzz.sh long [RUNS] [TARGET...]
#
# Coverage-guided fuzzing of the firmware's parsers (the fuzz/ crate,
# libFuzzer through cargo-fuzz). Builds every target once, then runs them
# one after another, each for SECONDS, and prints the executions of each
# from libFuzzer's final stats.
#   run   (make fuzz)       SECONDS from FUZZ_SECONDS, default 300; the
#                           corpus grows in fuzz/target/corpus/<target>
#                           (not committed), seeded from fuzz/corpus/<target>.
#   test  (make test-fuzz)  every input of fuzz/corpus/<target> (the seeds,
#                           and each crash once fixed: a regression test),
#                           then SECONDS (default 20) of fuzzing from a
#                           fresh scratch corpus.
#   long  (make fuzz-long)  RUNS executions of each target (libFuzzer's
#                           -runs; default 10,000,000, the issue's long-run
#                           figure), growing the same corpus as `run`.
#                           FUZZ_SANITIZER=none builds without
#                           AddressSanitizer (about twice the speed; the
#                           targets link only safe Rust) into its own
#                           directory; debug assertions and overflow checks
#                           stay on either way.
# A crash, a hang (-timeout) or memory growth (-rss_limit_mb) fails the
# target; its input is saved under fuzz/artifacts/<target>/ and the
# script exits non-zero after running the others.
#
# cargo fuzz needs nightly flags (-Z sanitizer, -C passes=sancov): the
# stable 1.95 toolchain accepts them with RUSTC_BOOTSTRAP=1, which is
# known to work here; no nightly toolchain is installed.
set -euo pipefail

mode=${1:?usage: fuzz.sh run|test [SECONDS] [TARGET...] or fuzz.sh long [RUNS] [TARGET...]}
shift
runs=
case "$mode" in
  run) seconds=${1:-${FUZZ_SECONDS:-300}} ;;
  test) seconds=${1:-20} ;;
  long) runs=${1:-${FUZZ_RUNS:-10000000}}; seconds=0 ;;
  *) echo "fuzz.sh: unknown mode $mode (run, test or long)" >&2; exit 64 ;;
esac
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/.."

# Memory bound per target (libFuzzer's -rss_limit_mb, also its largest
# single allocation) and per-input time before it counts as a hang.
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-1024}
TIMEOUT_S=${FUZZ_TIMEOUT_S:-10}

bash scripts/setup.sh fuzz

export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# `test` (in `make test`) builds without optimisation and runs two
# targets at a time: it is a regression run over the corpora plus a short
# smoke, and the build is most of its time (about 2 minutes instead of 5
# from scratch on two cores). `run` builds optimised (libFuzzer's speed)
# and runs one target at a time.
if [ "$mode" = test ]; then
  build=(--dev); profile=debug; jobs=${FUZZ_JOBS:-2}
else
  build=(); profile=release; jobs=${FUZZ_JOBS:-1}
fi
sanitizer=${FUZZ_SANITIZER:-address}
tdir=target
if [ "$sanitizer" != address ]; then
  build+=(--sanitizer "$sanitizer" --target-dir "target-$sanitizer"); tdir=target-$sanitizer
fi
start=$(date +%s)
(cd fuzz && nice -n "${FUZZ_NICE:-10}" cargo fuzz build "${build[@]}")
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start )) s (sanitizer: $sanitizer)"

host=$(rustc -vV | sed -n 's/^host: //p')
bin=fuzz/$tdir/$host/$profile

one() { # TARGET: runs it, writes its result line to fuzz/target/TARGET.result
  local t=$1 seeds=fuzz/corpus/$1 work log=fuzz/target/$1.log rc=0 execs secs rate
  mkdir -p "$seeds" "fuzz/artifacts/$t"
  if [ "$mode" != test ]; then
    work=fuzz/target/corpus/$t
    mkdir -p "$work"
  else
    work=$(mktemp -d "${TMPDIR:-/tmp}/pocobelle-fuzz-$t.XXXXXX")
  fi
  # 0 seconds: the corpus inputs only, no mutation (a deterministic
  # regression run).
  local budget=(-max_total_time="$seconds")
  [ "$seconds" = 0 ] && budget=(-runs="${runs:-0}")
  nice -n "${FUZZ_NICE:-10}" "$bin/$t" "$work" "$seeds" \
    "${budget[@]}" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_LIMIT_MB" \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  [ "$mode" = test ] && rm -rf "$work"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  secs=${secs:-$seconds}
  rate=$(( ${execs:-0} / (secs > 0 ? secs : 1) ))
  if [ $rc -eq 0 ]; then
    printf 'fuzz: %-16s ok      %12s execs in %4s s (%s/s)\n' "$t" "${execs:-?}" "$secs" "$rate" >"fuzz/target/$t.result"
  else
    { printf 'fuzz: %-16s FAILED  %12s execs (exit %s; log %s)\n' "$t" "${execs:-?}" "$rc" "$log"
      grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -8 || true
    } >"fuzz/target/$t.result"
  fi
}

running=0
for t in "${targets[@]}"; do
  rm -f "fuzz/target/$t.result"
  one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true
failed=()
for t in "${targets[@]}"; do
  if [ -f "fuzz/target/$t.result" ]; then cat "fuzz/target/$t.result"; else echo "fuzz: $t left no result"; fi
  grep -q '^fuzz: [^ ]* *ok ' "fuzz/target/$t.result" 2>/dev/null || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed ($(( $(date +%s) - start )) s in all)"
