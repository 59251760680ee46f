#!/usr/bin/env bash
# scripts/bench.sh — the benchmarks of docs/BENCHMARKS.md, side by side in one run:
#   1. moe-bench-local in bf16, f32, q8_0, q4_0, q4_k, q6_k and int4 (the quantized formats also
#      with --int8_activations, and on CPUs with AVX512_BF16 --bf16_activations, each printing its
#      row error): the kernels line, streaming-read
#      bandwidth, the CPU expert FFN beside a oneDNN dense matmul of the same FLOPs (C2), 1 token
#      with cold weights (C3), resident/checkpoint bytes (C4), the in-process MoE layer;
#      then Q-C1's peer: llama.cpp (built once from PyPI's llama-cpp-python source, setup.sh
#      moe_llama_cpp, ~10 min) on a qwen3moe GGUF of the same shapes in q8_0, q4_k, q4_k_m and
#      bf16 (scripts/llama_cpp_peer.py; MOE_BENCH_LLAMA_CPP=0 skips it);
#   2. moe-bench against a --local router (the same layer behind one gRPC hop);
#   3. moe-bench against a cluster of 4 workers + router (networked), and the P4 ratio; the wire
#      bytes per routed pair from the router's metrics;
#   4. scripts/hf_peers.py: Hugging Face transformers' own MixtralSparseMoeBlock (and one expert
#      the way it computes it) in bf16 and f32, PyTorch + transformers from PyPI in the cached
#      venv (setup.sh moe_torch_env), same threads; the C1 ratios;
#   5. P6: on a tiny model (compute negligible), the 1-token round trip through router + 4
#      workers against an empty round trip (health Check) on the same channel;
#   6. P7: 16 concurrent clients against 1, networked, at 1 and 16 tokens per request;
#   7. P5: moe-bench-codec, serializing + parsing a request against memcpy (own table);
#   8. a plot (scripts/bench_plot.py): tokens/s against batch size for in-process, --local,
#      networked and HF's block, and the networked latency CDF, to docs/benchmarks.png
#      (MOE_BENCH_PNG overrides);
#   9. P8: admission control under ~3x overload (scripts/overload_bench.sh, own table);
#  10. micro-batch overlap against the serial path on fast and 1 Gbit/s links
#      (scripts/overlap_bench.sh, own table; needs root for network namespaces, else skipped);
#  11. the whole model end to end (scripts/e2e_bench.py, own table and plot docs/e2e.png,
#      MOE_BENCH_E2E_PNG overrides; MOE_BENCH_E2E=0 skips it): prefill and decode tokens/s of HF
#      transformers' own Mixtral-shaped model (8 layers) against the same model from
#      moe_serve.hf.from_pretrained on a --local router and on router + 2 workers, and the decode
#      step's time split (client compute, round trips, non-compute time per MoE layer);
#  12. P9: live placement (scripts/rebalance_bench.sh, own table): a skewed checkpoint on 4
#      workers under 8 clients, --rebalance=off against auto: tokens/s, worker imbalance, the
#      time the move took, failed requests.
# Uses the demo checkpoint shape (hidden 1024, intermediate 3584, 8 experts, top-2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_build
TORCH_PYTHON="$(moe_torch_env)"
B="$BUILD/bin"
MODEL="${MOE_DEMO_MODEL:-$BUILD/demo-model}"
OUT="${MOE_BENCH_OUT:-$BUILD/bench}"
TOKENS="${MOE_BENCH_TOKENS:-1,4,16,64,256,1024}"
DURATION="${MOE_BENCH_SECONDS:-4}"
mkdir -p "$OUT"
if [ ! -f "$MODEL/config.json" ]; then
  "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 --num_experts=8 \
    --top_k=2 --num_layers=4 --dtype=bf16 --shards=2 --seed=2026
fi
echo "== 1. in-process (no gRPC), bf16 and f32 weights"
"$B/moe-bench-local" --dtype=bf16 --tokens="$TOKENS" --json="$OUT/local.json" \
  --inputs_out="$OUT/layer_inputs.safetensors"  # the gate and inputs HF's block then routes too
echo
"$B/moe-bench-local" --dtype=f32 --tokens="$TOKENS" --json="$OUT/local_f32.json"
for format in q8_0 q4_0 q4_k q6_k int4; do  # experts quantized at load and kept so (the quantized-experts table)
  echo
  "$B/moe-bench-local" --quantize=$format --tokens="$TOKENS" --json="$OUT/local_$format.json"
  echo
  "$B/moe-bench-local" --quantize=$format --int8_activations --tokens="$TOKENS" --json="$OUT/local_${format}_int8.json"
  if grep -qw avx512_bf16 /proc/cpuinfo; then
    echo
    "$B/moe-bench-local" --quantize=$format --bf16_activations --tokens="$TOKENS" --json="$OUT/local_${format}_bf16.json"
  fi
done
if [ "${MOE_BENCH_LLAMA_CPP:-1}" != 0 ]; then
  echo; echo "== 1b. llama.cpp's CPU MoE on the same shapes (Q-C1's peer)"
  "$BUILD/venv/bin/python" "$ROOT/scripts/llama_cpp_peer.py" --bin "$(moe_llama_cpp)" --work "$OUT/llama_cpp" \
    --tokens="$TOKENS" --threads="$(nproc)" --types=q8_0,q4_k,q4_k_m,bf16 --json="$OUT/llama_cpp.json"
fi
echo; echo "== 2. router --local (one gRPC hop, experts in the router)"
"$B/moe-cluster" --checkpoint="$MODEL" --workers=0 -- \
  moe-bench --router={router} --tokens="$TOKENS" --duration_s="$DURATION" --json="$OUT/router_local.json" 2>/dev/null
echo; echo "== 3. networked: router + 4 workers, each its own process"
# (and the router's metrics after it: the bytes its worker calls carried)
"$B/moe-cluster" --checkpoint="$MODEL" --workers=4 --worker_flags="--threads=1" -- bash -c \
  'moe-bench --router={router} --tokens="$0" --duration_s="$1" --json="$2/networked.json" 2>/dev/null &&
   /usr/bin/python3 -c "import os, urllib.request; print(urllib.request.urlopen(\"http://\" + os.environ[\"MOE_ROUTER_METRICS\"] + \"/metrics\").read().decode())" >"$2/networked_metrics.txt"' \
  "$TOKENS" "$DURATION" "$OUT"
echo; echo "== 4. Hugging Face transformers' MoE block, PyTorch from PyPI (same shapes and threads)"
for dt in bf16 f32; do
  "$TORCH_PYTHON" "$ROOT/scripts/hf_peers.py" --dtype=$dt --tokens="$TOKENS" --threads="$(nproc)" \
    --inputs="$OUT/layer_inputs.safetensors" --json="$OUT/hf_$dt.json" 2>/dev/null
done
echo; echo "== 5. P6: round trip on a tiny model (H 64, I 128) vs an empty round trip"
TINY="$BUILD/bench-tiny-model"
[ -f "$TINY/config.json" ] || "$B/moe-make-checkpoint" --out="$TINY" --hidden_size=64 --intermediate_size=128 \
  --num_experts=8 --top_k=2 --num_layers=1 --dtype=f32 --seed=2026 >/dev/null
"$B/moe-cluster" --checkpoint="$TINY" --workers=4 --worker_flags="--threads=1" -- \
  moe-bench --router={router} --ping --tokens=1 --duration_s="$DURATION" --json="$OUT/p6.json" 2>/dev/null
echo; echo "== 6. P7: 16 concurrent clients vs 1 (networked, demo model)"
"$B/moe-cluster" --checkpoint="$MODEL" --workers=4 --worker_flags="--threads=1" -- \
  moe-bench --router={router} --concurrency=16 --tokens=1,16 --duration_s="$DURATION" --json="$OUT/p7_16.json" 2>/dev/null
echo; echo "== 7. P5: one hop's serialize + parse vs memcpy"
"$B/moe-bench-codec"
echo
/usr/bin/python3 - "$OUT" "$MODEL" <<'PY'
import json, sys
out = sys.argv[1]
local = {r["tokens"]: r for r in json.load(open(f"{out}/local.json"))["results"] if r["bench"] == "moe_layer"}
rl = {r["tokens"]: r for r in json.load(open(f"{out}/router_local.json"))["results"]}
net = {r["tokens"]: r for r in json.load(open(f"{out}/networked.json"))["results"]}
print("P4: tokens/s of the MoE layer (median in-process; gRPC runs: requests over the run)")
print(f"{'tokens':>8} {'in-process':>12} {'router --local':>15} {'networked':>12} {'P4 net/in-proc':>15} {'--local/in-proc':>16}")
for t in sorted(local):
    ip = t / local[t]["median_s"]
    a = rl.get(t, {}).get("tokens_per_s", 0)
    b = net.get(t, {}).get("tokens_per_s", 0)
    print(f"{t:>8} {ip:>12.0f} {a:>15.0f} {b:>12.0f} {b/ip:>15.2f} {a/ip:>16.2f}")
metrics = open(f"{out}/networked_metrics.txt").read().splitlines()
def total(prefix, needle=""):
    return sum(float(l.split()[-1]) for l in metrics if l.startswith(prefix) and needle in l)
pairs = total("moe_expert_tokens_routed_total")
sent = total("moe_worker_dispatch_bytes_total", 'direction="sent"')
received = total("moe_worker_dispatch_bytes_total", 'direction="received"')
hidden = json.load(open(f"{sys.argv[2]}/config.json"))["hidden_size"]
if pairs > 0:
    print(f"wire bytes per routed (token, expert) pair, networked run: sent {sent / pairs:.0f}, received "
          f"{received / pairs:.0f} (one f32 row each way without --each_token_once: {4 * hidden})")
print()
print("C1: MoE layer tokens/s, ours in-process / HF transformers' block (the faster of its implementations)")
print("C2: expert FFN GFLOP/s / oneDNN dense matmul of the same FLOPs (target >= 0.9 at >= 256 rows)")
for dt, name in (("bf16", "local.json"), ("f32", "local_f32.json")):
    ours = json.load(open(f"{out}/{name}"))
    hf = json.load(open(f"{out}/hf_{dt}.json"))["results"]
    layer = {r["tokens"]: r for r in ours["results"] if r["bench"] == "moe_layer"}
    ffn = {r["tokens"]: r for r in ours["results"] if r["bench"] == "expert_ffn"}
    block = {}
    for r in hf:
        if r["bench"] == "moe_block" and (r["tokens"] not in block or r["median_s"] < block[r["tokens"]]["median_s"]):
            block[r["tokens"]] = r
    hf_ffn = {r["tokens"]: r for r in hf if r["bench"] == "expert_ffn"}
    print(f"-- {dt}: {ours['device']}")
    print(f"{'tokens':>8} {'ours tok/s':>11} {'HF tok/s':>9} {'HF impl':>11} {'C1':>6} {'target':>7}"
          f" {'FFN GF/s':>9} {'HF FFN':>7} {'dense':>7} {'C2':>5} {'experts ours/HF':>16}")
    for t in sorted(layer):
        if t not in block:
            continue
        o = t / layer[t]["median_s"]
        target = 1.5 if t <= 16 else 1.1 if t >= 256 else 1.0
        f = ffn.get(t, {})
        print(f"{t:>8} {o:>11.0f} {block[t]['tokens_per_s']:>9.0f} {block[t]['impl']:>11} "
              f"{o / block[t]['tokens_per_s']:>6.2f} {target:>7.1f} {f.get('gflops', 0):>9.1f} "
              f"{hf_ffn.get(t, {}).get('gflops', 0):>7.1f} {f.get('dense_gflops', 0):>7.1f} "
              f"{f.get('gflops', 0) / max(f.get('dense_gflops', 1), 1e-9):>5.2f}"
              f" {str(layer[t].get('experts_touched', '?')) + '/' + str(block[t].get('experts_touched', '?')):>16}")
    cold = [r for r in ours["results"] if r["bench"] == "ffn_cold_1"]
    if cold:
        c = cold[0]
        print(f"C3 (1 token, cold weights): {c['median_s'] * 1e3:.3f} ms / (weight bytes / {c['bandwidth_gbs']:.1f} GB/s ="
              f" {c['floor_s'] * 1e3:.3f} ms) = {c['c3']:.2f} (target <= 1.25);  C4 resident/checkpoint = {ours['c4']:.3f}")
p6 = {r["tokens"]: r for r in json.load(open(f"{out}/p6.json"))["results"]}
print()
print(f"P6: 1-token round trip p50 {p6[1]['p50_s'] * 1e3:.3f} ms / empty round trip p50 {p6[0]['p50_s'] * 1e3:.3f} ms"
      f" = {p6[1]['p50_s'] / p6[0]['p50_s']:.2f} (target <= 2.4, two round trips in series);"
      f" p99/p50 = {p6[1]['p99_s'] / p6[1]['p50_s']:.2f} (target <= 2)")
p7 = {r["tokens"]: r for r in json.load(open(f"{out}/p7_16.json"))["results"]}
for t in (1, 16):
    if t in p7 and t in net:
        print(f"P7 at {t:>2} tokens/request: 16 clients {p7[t]['tokens_per_s']:.0f} tokens/s / 1 client "
              f"{net[t]['tokens_per_s']:.0f} = {p7[t]['tokens_per_s'] / net[t]['tokens_per_s']:.2f} (target >= 3)")
PY
echo; echo "== plot: tokens/s against batch size, latency CDF (matplotlib in the benchmark venv)"
"$TORCH_PYTHON" -c "import matplotlib" 2>/dev/null ||
  "$TORCH_PYTHON" -m pip install -q --disable-pip-version-check matplotlib==3.11.2 >&2
"$TORCH_PYTHON" "$ROOT/scripts/bench_plot.py" "$OUT" "${MOE_BENCH_PNG:-$ROOT/docs/benchmarks.png}"
echo; MOE_BENCH_OUT="$OUT" bash "$ROOT/scripts/overload_bench.sh"
echo
if [ "$(id -u)" = 0 ]; then
  MOE_BENCH_OUT="$OUT" bash "$ROOT/scripts/overlap_bench.sh"
else
  echo "== micro-batch overlap: skipped (scripts/overlap_bench.sh needs root for network namespaces)"
fi
if [ "${MOE_BENCH_E2E:-1}" != 0 ]; then
  echo; echo "== 11. the whole model end to end: HF transformers in-process vs moe_serve.hf.from_pretrained"
  "$TORCH_PYTHON" "$ROOT/scripts/e2e_bench.py" --bin "$B" --work "$OUT" --threads "$(nproc)" \
    --json "$OUT/e2e.json" --png "${MOE_BENCH_E2E_PNG:-$ROOT/docs/e2e.png}"
fi
echo; echo "== 12. P9: live placement on skewed routing (--rebalance=off vs auto, 4 workers)"
MOE_BENCH_OUT="$OUT" MOE_BUILD_DIR="$BUILD" bash "$ROOT/scripts/rebalance_bench.sh"
