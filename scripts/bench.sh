#!/usr/bin/env bash
# scripts/bench.sh — the benchmarks of docs/BENCHMARKS.md, side by side in one run:
#   1. moe-bench-local: OpenBLAS sgemm 2048³, the CPU expert FFN and the in-process MoE layer (P2);
#   2. moe-bench against a --local router (the same layer behind one gRPC hop);
#   3. moe-bench against a cluster of 4 workers + router (networked), and the P4 ratio;
#   4. scripts/torch_peers.py: the same FFN and a Mixtral block in eager PyTorch (Debian's
#      python3-torch, 2 threads), and the P1 and P3 ratios.
# Uses the demo checkpoint shape (hidden 1024, intermediate 3584, 8 experts, top-2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages bench
moe_build
B="$BUILD/bin"
MODEL="${MOE_DEMO_MODEL:-$BUILD/demo-model}"
OUT="${MOE_BENCH_OUT:-$BUILD/bench}"
TOKENS="${MOE_BENCH_TOKENS:-1,16,256,1024}"
DURATION="${MOE_BENCH_SECONDS:-4}"
mkdir -p "$OUT"
if [ ! -f "$MODEL/config.json" ]; then
  "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 --num_experts=8 \
    --top_k=2 --num_layers=4 --dtype=bf16 --shards=2 --seed=2026
fi
echo "== 1. in-process (no gRPC)"
"$B/moe-bench-local" --tokens="$TOKENS" --json="$OUT/local.json"
echo; echo "== 2. router --local (one gRPC hop, experts in the router)"
"$B/moe-cluster" --checkpoint="$MODEL" --workers=0 -- \
  moe-bench --router={router} --tokens="$TOKENS" --duration_s="$DURATION" --json="$OUT/router_local.json" 2>/dev/null
echo; echo "== 3. networked: router + 4 workers, each its own process"
"$B/moe-cluster" --checkpoint="$MODEL" --workers=4 --worker_flags="--threads=1" -- \
  moe-bench --router={router} --tokens="$TOKENS" --duration_s="$DURATION" --json="$OUT/networked.json" 2>/dev/null
echo; echo "== 4. PyTorch peers (same shapes and threads)"
/usr/bin/python3 "$ROOT/scripts/torch_peers.py" --tokens="$TOKENS" --threads="$(nproc)" --json="$OUT/torch.json"
echo
/usr/bin/python3 - "$OUT" <<'PY'
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
torch = json.load(open(f"{out}/torch.json"))["results"]
ffn = {r["tokens"]: r for r in json.load(open(f"{out}/local.json"))["results"] if r["bench"] == "expert_ffn"}
t_ffn = {r["tokens"]: r for r in torch if r["bench"] == "expert_ffn"}
t_block = {r["tokens"]: r for r in torch if r["bench"] == "moe_block"}
print()
print("P1: expert FFN GFLOP/s, ours / PyTorch;  P3: MoE layer tokens/s, ours in-process / PyTorch eager block")
print(f"{'tokens':>8} {'ours GF/s':>10} {'torch GF/s':>11} {'P1':>6} {'ours tok/s':>11} {'torch tok/s':>12} {'P3':>6}")
for t in sorted(ffn):
    if t not in t_ffn or t not in t_block or t not in local:
        continue
    ours_tps, torch_tps = t / local[t]["median_s"], t_block[t]["tokens_per_s"]
    print(f"{t:>8} {ffn[t]['gflops']:>10.1f} {t_ffn[t]['gflops']:>11.1f} {ffn[t]['gflops'] / t_ffn[t]['gflops']:>6.2f}"
          f" {ours_tps:>11.0f} {torch_tps:>12.0f} {ours_tps / torch_tps:>6.2f}")
PY
