#!/usr/bin/env bash
# scripts/fuzz.sh [seconds per target] — builds tests/fuzz/*_fuzz.cc as libFuzzer binaries with
# clang, ASan and UBSan into build-fuzz/ and runs each for the given time (default 60 s) from its
# seed corpus (tests/fuzz/corpus/<target>, copied: new inputs land in build-fuzz/corpus/), then
# prints executions per target. Any crash, leak or sanitizer report fails the script and leaves
# the reproducer (crash-*) in build-fuzz/. docs/RELIABILITY.md has the long run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
source "$ROOT/scripts/setup.sh"
moe_install_packages fuzz
FUZZ="$ROOT/build-fuzz"
moe_ccache
if [ ! -f "$FUZZ/build.ninja" ]; then
  # -O1 with line tables: what libFuzzer's authors advise, and symbolized stacks for the reports.
  # shellcheck disable=SC2086
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$FUZZ" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DMOE_FUZZ=ON -DMOE_SANITIZE=address $MOE_CCACHE_ARGS >/dev/null
fi
targets=(safetensors config request gguf)
cmake --build "$FUZZ" -j "${MOE_JOBS:-2}" --target "${targets[@]/%/_fuzzer}"
moe_ccache_summary
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$FUZZ/corpus/$t"
  cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$FUZZ/corpus/$t/" 2>/dev/null || true
  log="$FUZZ/$t.log"
  if (cd "$FUZZ" && "./fuzz/${t}_fuzzer" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 \
        -print_final_stats=1 "corpus/$t" >"$log" 2>&1); then
    echo "ok    $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}') executions, 0 findings"
  else
    echo "FAIL  $t: see $log"; status=1
  fi
done
exit $status
