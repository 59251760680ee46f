#!/usr/bin/env bash
# scripts/gpu-check.sh — everything the CUDA backend must show on a GPU, in one command, on a GPU
# machine that has CUDA but none of Debian's gRPC/Abseil/OpenBLAS packages (build-notes.md).
#
#   scripts/gpu-check.sh pack DIR      on the build machine: the bundle (scripts/bundle.sh), the
#                                      CUDA test binaries and this script, into DIR, and DIR.tar.gz
#                                      (about 25 MB) to carry over
#   DIR/gpu-check.sh run DIR OUT       on the GPU machine, in order:
#     1. cuda_backend_test and cuda_cluster_test (CUDA vs CPU backend; a cluster of CUDA workers);
#     2. moe-expert-bench: H1 and H3 per shape, both ways of issuing the GEMMs side by side, then
#        the CPU backend on the small shapes;
#     3. H4: the MoE layer in-process (moe-bench-local --backend=cuda) against a router with two
#        CUDA workers on the same GPU (moe-cluster + moe-bench), tokens/s and the ratio.
#   Tables go to stdout; logs and JSON to OUT.
#
# Exit status: 0 every step ran and passed; 1 a step failed; 77 no usable GPU (the CUDA tests
# skipped; the reason is printed). MOE_GPU_CHECK_BACKEND=cpu runs the same steps on the CPU backend
# with small shapes — a dry run of the plumbing, tested by tests/integration/gpu_check_test.sh.
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
export MOE_BIN_DIR="$B" TEST_TMPDIR="$out/tmp"
mkdir -p "$TEST_TMPDIR"
failed=()

echo "== gpu-check $(date -u +%FT%TZ) on $(hostname), backend $backend"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo; echo "== 1. CUDA tests"
for t in cuda_backend_test cuda_cluster_test; do
  if "$B/$t" >"$out/$t.log" 2>&1; then
    echo "ok   $t: $(grep -c '^\[       OK \]' "$out/$t.log") passed, $(grep -c '^\[  SKIPPED \]' "$out/$t.log") skipped"
  else
    echo "FAIL $t (log: $out/$t.log)"; grep -E '^\[  FAILED  \]|Failure|error' "$out/$t.log" | head -20 || true
    failed+=("$t")
  fi
done

if [ "$backend" = cuda ] && ! "$B/moe-expert-bench" --backend=cuda --dims=64x64 --tokens=1 --repeats=1 \
    >/dev/null 2>"$out/probe.log"; then
  echo; echo "no usable GPU: $(cat "$out/probe.log")"
  [ ${#failed[@]} -eq 0 ] && exit 77
  exit 1
fi

if [ "$backend" = cuda ]; then
  bench_args=(); cpu_args=(--tokens=1,4,16,64 --groups=8 --repeats=3)
  h=2048; inter=5632; tokens=1,16,256,1024,4096; seconds=3
else  # dry run: small shapes
  bench_args=(--dims=128x256 --tokens=1,8 --repeats=2); cpu_args=("${bench_args[@]}")
  h=64; inter=96; tokens=1,16; seconds=0.5
fi

echo; echo "== 2. moe-expert-bench (H1, H3; GEMM modes side by side)"
if ! "$B/moe-expert-bench" --backend="$backend" "${bench_args[@]}" --json="$out/expert_bench.json"; then
  failed+=(moe-expert-bench)
fi
echo; echo "-- the CPU backend on the small shapes"
if ! "$B/moe-expert-bench" --backend=cpu "${cpu_args[@]}" --json="$out/expert_bench_cpu.json"; then
  failed+=(moe-expert-bench-cpu)
fi

echo; echo "== 3. H4: in-process vs router + 2 workers, $backend, H=$h I=$inter E=8 top-2"
model="$out/h4-model"
rm -rf "$model"
"$B/moe-make-checkpoint" --out="$model" --hidden_size=$h --intermediate_size=$inter --num_experts=8 --top_k=2 \
  --num_layers=1 --dtype=bf16 --seed=2026 >/dev/null
h4_ok=1
"$B/moe-bench-local" --backend="$backend" --hidden_size=$h --intermediate_size=$inter --num_experts=8 --top_k=2 \
  --tokens=$tokens --json="$out/h4_in_process.json" >"$out/h4_in_process.log" 2>&1 || h4_ok=0
"$B/moe-cluster" --checkpoint="$model" --workers=2 --nometrics --worker_flags="--backend=$backend" -- \
  moe-bench --router={router} --tokens=$tokens --duration_s=$seconds --json="$out/h4_networked.json" \
  >"$out/h4_networked.log" 2>&1 || h4_ok=0
if [ $h4_ok = 1 ]; then
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
  echo "FAIL H4 (logs: $out/h4_in_process.log, $out/h4_networked.log)"; tail -5 "$out/h4_networked.log" || true
  failed+=(h4)
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-check: failed: ${failed[*]}"
  exit 1
fi
echo "gpu-check: every step ran; results in $out"
