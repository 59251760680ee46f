#!/usr/bin/env bash
# scripts/gpu-check.sh, the one command that runs the CUDA checks on a GPU machine, must not rot
# while no GPU runs it: pack a bundle, then dry-run every step on the CPU backend from the bundle
# (MOE_GPU_CHECK_BACKEND=cpu; the HF parity step too where MOE_GPU_PYTHON has torch) and check each
# step reported. Without a GPU, a real run must stop
# with exit 77 and the driver's reason. Args: <repo> <build dir> <tmp dir>.
set -euo pipefail
repo="$1"; build="$2"; tmp="$3/gpu-check-test"
rm -rf "$tmp" && mkdir -p "$tmp"
MOE_BUILD_DIR="$build" bash "$repo/scripts/gpu-check.sh" pack "$tmp/pack" >/dev/null
[ -f "$tmp/pack.tar.gz" ] || { echo "FAIL: pack wrote no pack.tar.gz"; exit 1; }
echo "ok   packed: $(ls "$tmp/pack/bin" | wc -l) binaries, $(du -sh "$tmp/pack.tar.gz" | cut -f1) compressed"

rc=0
MOE_GPU_CHECK_BACKEND=cpu "$tmp/pack/gpu-check.sh" run "$tmp/pack" "$tmp/out" >"$tmp/dry.txt" 2>&1 || rc=$?
if [ $rc != 0 ]; then cat "$tmp/dry.txt"; echo "FAIL: dry run exited $rc"; exit 1; fi
for want in "== 0. environment" "cuda_backend_test.BF16_back_to_back" "cuda_backend_test.F32_grouped" \
            "cuda_cluster_test.refusals" "cuda_cluster_test.grouped" "== 3. moe-expert-bench" \
            "-- the CPU backend" "== 4. H4" "h4-networked" "gpu-check: every step ran and passed"; do
  grep -qF -- "$want" "$tmp/dry.txt" || { cat "$tmp/dry.txt"; echo "FAIL: no '$want'"; exit 1; }
done
# With MOE_GPU_PYTHON (ctest sets it to the torch venv's python), the HF parity step ran on CPU workers.
if [ -n "${MOE_GPU_PYTHON:-}" ]; then
  grep -qE '^gpu-hf-parity +ok' "$tmp/out/summary.txt" || { cat "$tmp/dry.txt"; echo "FAIL: HF parity step"; exit 1; }
  grep -q '4 passed, 0 failed' "$tmp/out/gpu-hf-parity.log" || { cat "$tmp/out/gpu-hf-parity.log"; exit 1; }
fi
# Every step is in the summary with its time; OUT holds only small results (scratch lives elsewhere).
[ "$(grep -c ' ok .*s$' "$tmp/out/summary.txt")" -ge 14 ] || { cat "$tmp/out/summary.txt"; echo "FAIL: summary"; exit 1; }
[ ! -e "$tmp/out/h4-model" ] && [ ! -e "$tmp/out/tmp" ] || { ls "$tmp/out"; echo "FAIL: scratch in OUT"; exit 1; }
[ "$(du -sk "$tmp/out" | cut -f1)" -lt 4096 ] || { du -sh "$tmp/out"/*; echo "FAIL: OUT over 4 MiB"; exit 1; }
python3 - "$tmp/out" <<'PY'
import json, sys
out = sys.argv[1]
bench = json.load(open(f"{out}/expert_bench.json"))
assert [r["tokens_per_expert"] for r in bench["results"]] == [1, 8], bench
assert all(r["median_ms"] > 0 and r["tflops"] > 0 for r in bench["results"]), bench
net = json.load(open(f"{out}/h4_networked.json"))["results"]
assert sorted(r["tokens"] for r in net) == [1, 16] and all(r["tokens_per_s"] > 0 for r in net), net
PY
echo "ok   the dry run ran every step from the bundle, timed each, and wrote only small results to OUT"

if command -v nvidia-smi >/dev/null; then
  echo "ok   (a GPU driver is present: the no-GPU exit is not checked here)"
else
  rc=0
  "$tmp/pack/gpu-check.sh" run "$tmp/pack" "$tmp/out-gpu" >"$tmp/gpu.txt" 2>&1 || rc=$?
  if [ $rc != 77 ] || ! grep -q "no usable GPU: .*CUDA" "$tmp/gpu.txt"; then
    cat "$tmp/gpu.txt"; echo "FAIL: without a GPU, expected exit 77 with the reason, got $rc"; exit 1
  fi
  echo "ok   without a GPU a real run stops with 77 and says why"
fi
echo "3 passed, 0 failed"
