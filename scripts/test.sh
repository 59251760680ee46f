#!/usr/bin/env bash
# scripts/test.sh [--sanitize=address|thread] — on a fresh Debian 12 machine: install what is
# missing, build into build/, run every test through ctest. Exits non-zero on any failure.
# Then, in the plain build, a fuzz smoke run: scripts/fuzz.sh with MOE_FUZZ_SMOKE_S seconds per
# target (default 10; 0 skips; ~3 min on 2 cores the first time, most of it building with clang).
# --sanitize=address builds into build-asan/ with ASan + UBSan (any report fails its test: UBSan
# does not recover, ASan aborts); --sanitize=thread into build-tsan/ with TSan.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for arg in "$@"; do
  case "$arg" in
    --sanitize=address|--sanitize=thread)
      kind="${arg#--sanitize=}"
      export MOE_BUILD_DIR="${MOE_BUILD_DIR:-$ROOT/build-${kind/address/asan}}"
      MOE_BUILD_DIR="${MOE_BUILD_DIR/build-thread/build-tsan}"
      export MOE_CMAKE_ARGS="-DMOE_SANITIZE=$kind"
      # Reports go to stderr and fail the test; gRPC's and protobuf's process-lifetime singletons
      # are not leaks of ours.
      export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
      export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0}"
      export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
      # Under TSan every OpenMP region runs on one thread (uninstrumented libgomp; cpu_backend.cc).
      [ "$kind" = thread ] && export OMP_NUM_THREADS=1
      export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/scripts/tsan.supp}"
      ;;
    *) echo "usage: scripts/test.sh [--sanitize=address|thread]" >&2; exit 2 ;;
  esac
done
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_python_env
MOE_TORCH_PYTHON="$(moe_torch_env)"  # torch + transformers for the HF parity test (cached per machine)
export MOE_TORCH_PYTHON
moe_build
cd "$BUILD"
ctest --output-on-failure -j "${MOE_JOBS:-2}" --timeout 600
if [ -z "${MOE_CMAKE_ARGS:-}" ] && [ "${MOE_FUZZ_SMOKE_S:-10}" != 0 ]; then
  echo "== fuzz smoke: ${MOE_FUZZ_SMOKE_S:-10} s per target (scripts/fuzz.sh; crashes fail the run)"
  "$ROOT/scripts/fuzz.sh" "${MOE_FUZZ_SMOKE_S:-10}"
fi
