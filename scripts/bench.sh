#!/usr/bin/env bash
# scripts/bench.sh — the benchmarks of docs/BENCHMARKS.md, side by side in one run:
#   1. moe-bench-local: OpenBLAS sgemm 2048³, the CPU expert FFN and the in-process MoE layer (P2);
#   2. moe-bench against a --local router (the same layer behind one gRPC hop);
#   3. moe-bench against a cluster of 4 workers + router (networked), and the P4 ratio.
# Uses the demo checkpoint shape (hidden 1024, intermediate 3584, 8 experts, top-2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
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
PY
