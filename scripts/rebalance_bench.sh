#!/usr/bin/env bash
# scripts/rebalance_bench.sh — P9 of docs/BENCHMARKS.md: live placement on skewed routing.
# A checkpoint whose gate sends about half the tokens to expert 0 of each layer (moe-make-checkpoint
# --skew=10; demo widths: hidden 1024, intermediate 3584, 8 experts, top-2, 2 layers, bf16) on 4
# workers of 2 experts each (--threads=1), 8 concurrent clients of 64 tokens on layer 0
# (moe-bench); once with --rebalance=off and once with --rebalance=auto (--redundant_experts=4,
# rounds every 2 s): a settling phase, then a measured one. Prints tokens/s before and after, the
# worker imbalance the controller measured (max/mean worker load) before and after, how long the
# first move took to apply and how many requests failed. Needs a build (scripts/bench.sh calls
# it as step 12; alone: bash scripts/rebalance_bench.sh after scripts/test.sh or demo.sh).
# MOE_BENCH_SECONDS sets the measured phase (default 8), MOE_REBALANCE_SETTLE the settling one (8).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
B="$BUILD/bin"
OUT="${MOE_BENCH_OUT:-$BUILD/bench}/rebalance"
MODEL="$BUILD/bench-skewed-model"
SECONDS_MEASURED="${MOE_BENCH_SECONDS:-8}"
SETTLE="${MOE_REBALANCE_SETTLE:-8}"
mkdir -p "$OUT"
[ -f "$MODEL/config.json" ] || "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 \
  --num_experts=8 --top_k=2 --num_layers=2 --dtype=bf16 --seed=2026 --skew=10 >/dev/null
TOKEN="$OUT/admin_token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN"
for mode in off auto; do
  "$B/moe-cluster" --checkpoint="$MODEL" --workers=4 \
    --worker_flags="--threads=1 --admin_token_file=$TOKEN" \
    --router_flags="--rebalance=$mode --rebalance_interval_s=2 --redundant_experts=4 --rebalance_min_pairs=500 --worker_admin_token_file=$TOKEN" \
    -- bash -c '
      moe-bench --router={router} --concurrency=8 --tokens=64 --duration_s="$1" --json="$3/settle_$0.json" >/dev/null 2>&1
      moe-bench --router={router} --concurrency=8 --tokens=64 --duration_s="$2" --json="$3/measured_$0.json" 2>/dev/null
      /usr/bin/python3 -c "import os, urllib.request; print(urllib.request.urlopen(\"http://\" + os.environ[\"MOE_ROUTER_METRICS\"] + \"/metrics\").read().decode())" >"$3/metrics_$0.txt"' \
    "$mode" "$SETTLE" "$SECONDS_MEASURED" "$OUT" 2>"$OUT/log_$mode.txt" >/dev/null
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
def metric(mode, name):
    for line in open(f"{out}/metrics_{mode}.txt"):
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")
def bench(mode):
    p = json.load(open(f"{out}/measured_{mode}.json"))["results"][0]
    settle = json.load(open(f"{out}/settle_{mode}.json"))["results"][0]
    p["failed_total"] = p["errors"] + settle["errors"]
    return p
rows = {}
for mode in ("off", "auto"):
    p = bench(mode)
    rows[mode] = p
log = open(f"{out}/log_auto.txt").read()
applied = re.findall(r"imbalance ([0-9.]+) now, ([0-9.]+) planned with (\d+) moves; applied as generation (\d+) in ([0-9.]+)s", log)
plan_off = re.findall(r"imbalance ([0-9.]+) now", open(f"{out}/log_off.txt").read())
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print(f"P9: live placement, skewed routing (CPU: {cpu}, {len([l for l in open('/proc/cpuinfo') if l.startswith('processor')])} cores)")
def tps(p):
    return p["tokens_per_s"]
off, auto = rows["off"], rows["auto"]
print("| | tokens/s (8 clients × 64 tokens) | failed requests (both phases) | p50 ms | p99 ms |")
print("|---|---|---|---|---|")
for mode, p in (("--rebalance=off", off), ("--rebalance=auto, after settling", auto)):
    print(f"| {mode} | {tps(p):.0f} | {p['failed_total']} | {1e3 * p['p50_s']:.1f} | {1e3 * p['p99_s']:.1f} |")
print(f"after ÷ before: {tps(auto) / tps(off):.2f}")
current = metric("auto", 'moe_placement_imbalance_ratio{placement="current"}')
replicas = metric("auto", 'moe_expert_replicas{expert="0"}')
failed_moves = metric("auto", 'moe_placement_moves_total{result="failed"}')
if applied:
    first = applied[0]
    print(f"imbalance (max/mean worker load, the controller's measure): {first[0]} before, {current:.2f} after "
          f"({len(applied)} changes applied; the first moved {first[2]} replicas in {first[4]} s)")
else:
    print("no placement change was applied")
print(f"replicas of expert 0 after: {replicas:.1f} (mean over the 2 layers; layer 1 gets no load here)")
print(f"failed placement moves: {failed_moves:.0f}")
PY
