#!/usr/bin/env bash
# scripts/bench.sh — the benchmarks of docs/BENCHMARKS.md, side by side in one run:
#   1. moe-bench-local: OpenBLAS sgemm 2048³, the CPU expert FFN and the in-process MoE layer (P2);
#   2. moe-bench against a --local router (the same layer behind one gRPC hop);
#   3. moe-bench against a cluster of 4 workers + router (networked), and the P4 ratio;
#   4. scripts/torch_peers.py: the same FFN and a Mixtral block in eager PyTorch (Debian's
#      python3-torch, 2 threads), and the P1 and P3 ratios;
#   5. P6: on a tiny model (compute negligible), the 1-token round trip through router + 4
#      workers against an empty round trip (health Check) on the same channel;
#   6. P7: 16 concurrent clients against 1, networked, at 1 and 16 tokens per request;
#   7. P5: moe-bench-codec, serializing + parsing a request against memcpy (own table).
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
p6 = {r["tokens"]: r for r in json.load(open(f"{out}/p6.json"))["results"]}
print()
print(f"P6: 1-token round trip p50 {p6[1]['p50_s'] * 1e3:.3f} ms / empty round trip p50 {p6[0]['p50_s'] * 1e3:.3f} ms"
      f" = {p6[1]['p50_s'] / p6[0]['p50_s']:.2f} (target <= 1.5);"
      f" p99/p50 = {p6[1]['p99_s'] / p6[1]['p50_s']:.2f} (target <= 2)")
p7 = {r["tokens"]: r for r in json.load(open(f"{out}/p7_16.json"))["results"]}
for t in (1, 16):
    if t in p7 and t in net:
        print(f"P7 at {t:>2} tokens/request: 16 clients {p7[t]['tokens_per_s']:.0f} tokens/s / 1 client "
              f"{net[t]['tokens_per_s']:.0f} = {p7[t]['tokens_per_s'] / net[t]['tokens_per_s']:.2f} (target >= 3)")
PY
