#!/usr/bin/env bash
# scripts/gpu-check.sh — everything the CUDA backend must show on a GPU, in one command, on a GPU
# machine that has CUDA but none of Debian's gRPC/Abseil/OpenBLAS packages (build-notes.md).
#
#   scripts/gpu-check.sh pack DIR      on the build machine: the bundle (scripts/bundle.sh), the
#                                      CUDA test binaries and this script, into DIR, and DIR.tar.gz
#                                      to carry over (carry the tarball: the unpacked bundle is
#                                      larger than the device tool's 64 MiB carry limit)
#   DIR/gpu-check.sh run DIR OUT       on the GPU machine, in order, each step under `timeout`
#                                      with its elapsed time printed:
#     0. the environment: the GPU (nvidia-smi), glibc against what the bundle needs, and every
#        library the binaries and libmoe_cuda.so load — CUDA's runtime and cuBLAS are searched
#        for (CUDA installs, system folders, Python venvs' nvidia/*/lib) and put on
#        LD_LIBRARY_PATH; still missing → fail, naming them;
#     1. a probe: one tiny step on the GPU; it failing ends the run (exit 77 without a GPU
#        driver, exit 1 with one: a GPU that cannot be used is a failure, not a skip);
#     2. cuda_backend_test, one process per dtype × GEMM mode (a sticky CUDA error in one cannot
#        poison the others), and cuda_cluster_test, one process per GEMM mode; with a GPU a
#        skipped test is a failure;
#     3. moe-expert-bench: H1 and H3 per shape (mixtral, deepseek; 1…4096 tokens per expert),
#        both ways of issuing the GEMMs, the products timed on the device, staging beside them;
#        then the CPU backend on one small shape (for scale);
#     4. H4: the MoE layer in-process (moe-bench-local --backend=cuda) against a router with two
#        CUDA workers on the same GPU (moe-cluster + moe-bench), tokens/s and the ratio;
#     5. parity against Hugging Face transformers (tests/golden/gpu_hf_parity.py: mixtral and
#        qwen2_moe, CUDA workers vs the HF module, bf16 rel <= 1e-2, the same experts) where
#        $MOE_GPU_PYTHON (default python3) has torch and transformers; said and skipped where not.
#   OUT gets only small things: summary.txt (one line per step), each step's log, the JSON of
#   the benchmarks. Scratch (test temporaries, the H4 checkpoint) goes to $MOE_GPU_SCRATCH
#   (default: a fresh folder under ${TMPDIR:-/tmp}), which is removed at the end.
#
# Exit status: 0 every step ran and passed; 1 a step failed (the others still ran, unless the
# probe failed); 77 no GPU driver here. MOE_GPU_CHECK_BACKEND=cpu runs the same steps on the CPU
# backend with small shapes — a dry run of the plumbing, tested by
# tests/integration/gpu_check_test.sh (the CUDA tests then skip, as they must without a GPU).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage="usage: gpu-check.sh pack DIR | gpu-check.sh run DIR OUT"
case "${1:-}" in
  pack)
    dir="${2:?$usage}"
    build="${MOE_BUILD_DIR:-$here/../build}"
    MOE_BUILD_DIR="$build" bash "$here/bundle.sh" "$dir" moe-router moe-expert moe-cluster moe-client moe-bench \
      moe-make-checkpoint moe-expert-bench moe-bench-local "$build/tests/cuda_backend_test" \
      "$build/tests/cuda_cluster_test"
    cp "$here/gpu-check.sh" "$dir/"
    mkdir -p "$dir/python"
    cp "$here/../tests/golden/gpu_hf_parity.py" "$here/../tests/golden/moe_processes.py" "$dir/python/"
    tar -czf "$dir.tar.gz" -C "$(dirname "$dir")" "$(basename "$dir")"
    echo "packed: $dir.tar.gz ($(du -sh "$dir.tar.gz" | cut -f1)); on the GPU machine:" \
      "tar -xzf $(basename "$dir").tar.gz && $(basename "$dir")/gpu-check.sh run $(basename "$dir") OUT"
    exit 0
    ;;
  run) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
dir="$(cd "${2:?$usage}" && pwd)"
mkdir -p "${3:?$usage}"
out="$(cd "$3" && pwd)"
B="$dir/bin"
backend="${MOE_GPU_CHECK_BACKEND:-cuda}"
scratch="${MOE_GPU_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/moe-gpu-check.XXXXXX")}"
mkdir -p "$scratch/tmp"
trap 'rm -rf "$scratch"' EXIT
export MOE_BIN_DIR="$B" TEST_TMPDIR="$scratch/tmp"
summary="$out/summary.txt"
: >"$summary"
failed=()
have_driver=0
command -v nvidia-smi >/dev/null && have_driver=1
[ "$backend" = cuda ] || have_driver=0  # a dry run: skips are expected

# step NAME LIMIT_S SHOW CMD...: runs CMD under `timeout` into OUT/NAME.log (printed when SHOW is
# 1), appends "NAME ok|FAIL seconds" to the summary; returns CMD's status. Never exits the script.
step() {
  local name="$1" limit="$2" show="$3" rc=0 t0 t1 verdict
  shift 3
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  [ "$show" = 1 ] && cat "$out/$name.log"
  verdict=ok
  if [ $rc != 0 ]; then
    verdict="FAIL(exit $rc$([ $rc = 124 ] && echo ", timed out after ${limit}s"))"
    failed+=("$name")
  fi
  printf '%-40s %-32s %6.1fs\n' "$name" "$verdict" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" |
    tee -a "$summary"
  return $rc
}

# A gtest binary filtered to FILTER as its own process; with a GPU driver present, a skipped
# test is a failure (ALLOWED_SKIP: a regex of tests that skip by design when a GPU is there).
gtest_step() {
  local name="$1" bin="$2" filter="$3" allowed_skip="${4:-^$}" rc=0
  step "$name" 300 0 "$B/$bin" --gtest_filter="$filter" || rc=$?
  local log="$out/$name.log" passed skipped unexpected
  # One line per test that ran ("[  SKIPPED ] Suite.Test (0 ms)"), not gtest's closing list.
  passed=$(grep -cE '^\[       OK \] .* \([0-9]+ ms\)$' "$log" || true)
  skipped=$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$log" || true)
  unexpected=$(grep -E '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$log" | grep -vcE "$allowed_skip" || true)
  echo "     $passed passed, $skipped skipped" | tee -a "$summary"
  if [ $rc != 0 ]; then
    grep -E '^\[  FAILED  \]|Failure|Expected|Which is|actual|error' "$log" | head -20 || true
  elif [ "$have_driver" = 1 ] && [ "$unexpected" != 0 ]; then
    grep -A2 '^\[  SKIPPED \]' "$log" | head -10
    echo "     FAIL: tests skipped on a machine with a GPU driver" | tee -a "$summary"
    failed+=("$name (skips)")
  elif [ $((passed + skipped)) = 0 ]; then
    echo "     FAIL: no test ran (filter $filter)" | tee -a "$summary"
    failed+=("$name (empty)")
  fi
}

finish() {
  echo
  if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu-check: failed: ${failed[*]}" | tee -a "$summary"
    exit 1
  fi
  echo "gpu-check: every step ran and passed; results in $out" | tee -a "$summary"
  exit 0
}

echo "== gpu-check $(date -u +%FT%TZ) on $(hostname), backend $backend, bundle $dir, scratch $scratch"
echo; echo "== 0. environment"
if [ "$have_driver" = 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
fi
echo "glibc: $(ldd --version 2>&1 | head -1)"
# CUDA's runtime and cuBLAS are the host's; find them if the loader does not.
libs_missing() { for f in "$@"; do ldd "$f" 2>&1 | awk '/=> not found/ {print $1}'; done | sort -u; }
objects=("$B/moe-expert" "$B/moe-router" "$B/moe-expert-bench")
[ -f "$dir/lib/libmoe_cuda.so" ] && objects+=("$dir/lib/libmoe_cuda.so")
if [ "$backend" = cuda ] && [ ! -f "$dir/lib/libmoe_cuda.so" ]; then
  echo "FAIL: the bundle has no lib/libmoe_cuda.so (was it built without nvcc?)"; failed+=(environment); finish
fi
# The bundled libstdc++ is Debian 12's: it needs glibc >= 2.36 (GLIBC_2.36 symbols).
too_old=$(for f in "${objects[@]}"; do ldd "$f" 2>&1 | grep -o "version \`GLIBC_[0-9.]*' not found" || true; done | sort -u)
if [ -n "$too_old" ]; then
  echo "FAIL: this glibc is too old for the bundle: $(echo $too_old) (it needs glibc >= 2.36)"
  failed+=(environment); finish
fi
for lib in $(libs_missing "${objects[@]}"); do
  where=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/*/lib /usr/local/cuda-*/lib64 \
           /usr/local/cuda-*/targets/*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /opt/conda/lib; do
    [ -e "$d/$lib" ] && { where="$d"; break; }
  done
  if [ -z "$where" ]; then  # a Python venv's nvidia-* wheels (PyTorch's), or wherever else it is
    where=$(timeout 60 find / -xdev \( -path /proc -o -path /sys \) -prune -o -name "$lib" -print 2>/dev/null |
            head -1 | xargs -r dirname || true)
  fi
  if [ -n "$where" ]; then
    echo "found $lib in $where"
    export LD_LIBRARY_PATH="$where${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
missing=$(libs_missing "${objects[@]}")
if [ -n "$missing" ]; then
  echo "FAIL: libraries not found anywhere on this machine: $(echo $missing)"
  for f in "${objects[@]}"; do ldd "$f" 2>&1 | grep -E 'not found|GLIBC' | sed "s|^|  $(basename "$f"): |"; done
  failed+=(environment); finish
fi
[ -f "$dir/lib/libmoe_cuda.so" ] && ldd "$dir/lib/libmoe_cuda.so" | grep -E 'cudart|cublas' | sed 's/^/  /'

if [ "$backend" = cuda ]; then
  echo; echo "== 1. probe: one tiny step on the GPU"
  if ! step probe 120 1 "$B/moe-expert-bench" --backend=cuda --dims=64x64 --tokens=1 --repeats=1; then
    if [ "$have_driver" = 0 ]; then
      echo "no usable GPU: $(grep -v '^$' "$out/probe.log" | tail -1)"
      exit 77
    fi
    echo "FAIL: a GPU driver is here, but CUDA cannot compute on it (probe.log above)"
    finish
  fi
  bench_args=(); cpu_args=(--dims=2048x1408 --tokens=1,4,16,64 --groups=8 --repeats=3)
  h=2048; inter=5632; tokens=1,16,256,1024,4096; seconds=3
else  # dry run: small shapes
  bench_args=(--dims=128x256 --tokens=1,8 --repeats=2); cpu_args=("${bench_args[@]}")
  h=64; inter=96; tokens=1,16; seconds=0.5
fi

echo; echo "== 2. CUDA tests, one process per mode"
gtest_step cuda_backend_test.availability cuda_backend_test 'CudaAvailabilityTest.*'
for mode in BF16_back_to_back F16_back_to_back F32_back_to_back BF16_grouped F16_grouped F32_grouped; do
  gtest_step "cuda_backend_test.$mode" cuda_backend_test "*/CudaBackendTest.*/$mode"
done
gtest_step cuda_cluster_test.refusals cuda_cluster_test 'CudaClusterTest.*' 'WorkerWithoutAGpuRefusesToStart'
for mode in back_to_back grouped; do
  gtest_step "cuda_cluster_test.$mode" cuda_cluster_test "*/CudaWorkersTest.*/$mode"
done

echo; echo "== 3. moe-expert-bench (H1, H3; GEMM modes side by side)"
step moe-expert-bench 420 1 "$B/moe-expert-bench" --backend="$backend" "${bench_args[@]}" \
  --json="$out/expert_bench.json" || true
echo; echo "-- the CPU backend on a small shape"
step moe-expert-bench-cpu 180 1 "$B/moe-expert-bench" --backend=cpu "${cpu_args[@]}" \
  --json="$out/expert_bench_cpu.json" || true

echo; echo "== 4. H4: in-process vs router + 2 workers, $backend, H=$h I=$inter E=8 top-2"
model="$scratch/h4-model"
h4_ok=1
step h4-checkpoint 120 0 "$B/moe-make-checkpoint" --out="$model" --hidden_size=$h --intermediate_size=$inter \
  --num_experts=8 --top_k=2 --num_layers=1 --dtype=bf16 --seed=2026 || h4_ok=0
[ $h4_ok = 1 ] && { step h4-in-process 300 0 "$B/moe-bench-local" --backend="$backend" --hidden_size=$h \
  --intermediate_size=$inter --num_experts=8 --top_k=2 --tokens=$tokens --json="$out/h4_in_process.json" || h4_ok=0; }
[ $h4_ok = 1 ] && { step h4-networked 300 0 "$B/moe-cluster" --checkpoint="$model" --workers=2 --nometrics \
  --worker_flags="--backend=$backend" -- moe-bench --router={router} --tokens=$tokens --duration_s=$seconds \
  --json="$out/h4_networked.json" || h4_ok=0; }
if [ $h4_ok = 1 ] && ! command -v python3 >/dev/null; then
  echo "(no python3 here for the H4 table: the numbers are in h4_in_process.json and h4_networked.json)"
elif [ $h4_ok = 1 ]; then
  python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
local = {r["tokens"]: r for r in json.load(open(f"{out}/h4_in_process.json"))["results"] if r["bench"] == "moe_layer"}
net = {r["tokens"]: r for r in json.load(open(f"{out}/h4_networked.json"))["results"]}
print(f"{'tokens':>8} {'in-process tok/s':>17} {'networked tok/s':>16} {'H4':>6}")
for t in sorted(local):
    ip = t / local[t]["median_s"]
    nw = net.get(t, {}).get("tokens_per_s", 0)
    print(f"{t:>8} {ip:>17.0f} {nw:>16.0f} {nw / ip:>6.2f}")
PY
else
  for f in h4-in-process h4-networked; do [ -f "$out/$f.log" ] && tail -5 "$out/$f.log"; done
fi

echo; echo "== 5. parity against Hugging Face transformers"
python="${MOE_GPU_PYTHON:-python3}"
if "$python" -c "import numpy, torch, transformers" 2>/dev/null; then
  step gpu-hf-parity 300 1 "$python" "$dir/python/gpu_hf_parity.py" --bin="$B" --tmp="$scratch" \
    --backend="$backend" || true
else
  echo "gpu-hf-parity                            skipped: $python has no torch + transformers" | tee -a "$summary"
fi
finish
