#!/usr/bin/env bash
# scripts/overload_bench.sh — P8, admission control under overload: a router with
# --max_inflight=8 in front of 4 workers (tiny model, compute negligible), driven by moe-bench
# closed-loop clients at 1 (unloaded), 8 (the bound) and 24 (~3x) concurrent clients, 16 tokens a
# request; a refused client waits 5 ms before its next request (--backoff_ms), as a client told
# RESOURCE_EXHAUSTED should. Prints accepted tokens/s, p50/p99 of accepted requests, and how many
# were refused (at once). Target: accepted p99 at 3x within 2x of unloaded; no DEADLINE_EXCEEDED.
# Then the same on the demo model (H 1024, 16 tokens ~7 ms of compute over both cores), with the
# bound where its throughput saturates (--max_inflight=1 on 2 cores, MOE_P8_DEMO_BOUND elsewhere) and
# 1x and 3x that many clients: there a refusal costs little next to the work it turns away.
# Run on a quiet machine (clients, router and workers share its cores).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_build
B="$BUILD/bin"
OUT="${MOE_BENCH_OUT:-$BUILD/bench}"
mkdir -p "$OUT"
TINY="$BUILD/bench-tiny-model"
[ -f "$TINY/config.json" ] || "$B/moe-make-checkpoint" --out="$TINY" --hidden_size=64 --intermediate_size=128 \
  --num_experts=8 --top_k=2 --num_layers=1 --dtype=f32 --seed=2026 >/dev/null
echo "== P8: overload against --max_inflight=8 (CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores)"
"$B/moe-cluster" --checkpoint="$TINY" --workers=4 --worker_flags="--threads=1" --router_flags="--max_inflight=8" -- \
  bash -c 'for c in 1 8 24; do moe-bench --router={router} --concurrency=$c --refusals_ok --backoff_ms=5 --tokens=16 --duration_s='"${MOE_BENCH_SECONDS:-4}"' \
    --json='"$OUT"'/p8_$c.json 2>/dev/null >/dev/null; done' >/dev/null 2>&1
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = {c: json.load(open(f"{out}/p8_{c}.json"))["results"][0] for c in (1, 8, 24)}
print(f"{'clients':>8} {'accepted tok/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'refused (RESOURCE_EXHAUSTED)':>30}")
for c, r in rows.items():
    print(f"{c:>8} {r['tokens_per_s']:>15.0f} {r['p50_s'] * 1e3:>8.3f} {r['p99_s'] * 1e3:>8.3f} {r.get('refused', 0):>30}")
print(f"P8: accepted p99 at 24 clients / 1 client = {rows[24]['p99_s'] / rows[1]['p99_s']:.2f} (target <= 2),"
      f" / 8 clients (the bound) = {rows[24]['p99_s'] / rows[8]['p99_s']:.2f};"
      f" other errors (timeouts included) at 24 clients: {rows[24].get('other_errors', 0)}")
PY
MODEL="${MOE_DEMO_MODEL:-$BUILD/demo-model}"
[ -f "$MODEL/config.json" ] || "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 \
  --num_experts=8 --top_k=2 --num_layers=4 --dtype=bf16 --shards=2 --seed=2026 >/dev/null
BOUND="${MOE_P8_DEMO_BOUND:-1}"  # one 16-token Forward already keeps 4 one-thread workers on 2 cores busy
echo
echo "== P8 on the demo model: --max_inflight=$BOUND (where its throughput saturates), $BOUND and $((3 * BOUND)) clients"
"$B/moe-cluster" --checkpoint="$MODEL" --workers=4 --worker_flags="--threads=1" --router_flags="--max_inflight=$BOUND" -- \
  bash -c 'for c in '"$BOUND $((3 * BOUND))"'; do moe-bench --router={router} --concurrency=$c --refusals_ok --backoff_ms=5 --tokens=16 --duration_s='"${MOE_BENCH_SECONDS:-4}"' \
    --json='"$OUT"'/p8_demo_$c.json 2>/dev/null >/dev/null; done' >/dev/null 2>&1
/usr/bin/python3 - "$OUT" "$BOUND" <<'PY'
import json, sys
out, bound = sys.argv[1], int(sys.argv[2])
rows = {c: json.load(open(f"{out}/p8_demo_{c}.json"))["results"][0] for c in (bound, 3 * bound)}
print(f"{'clients':>8} {'accepted tok/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'refused (RESOURCE_EXHAUSTED)':>30}")
for c, r in rows.items():
    print(f"{c:>8} {r['tokens_per_s']:>15.0f} {r['p50_s'] * 1e3:>8.3f} {r['p99_s'] * 1e3:>8.3f} {r.get('refused', 0):>30}")
print(f"P8 (demo model): accepted p99 at {3 * bound} clients / {bound} = {rows[3 * bound]['p99_s'] / rows[bound]['p99_s']:.2f}"
      f" (target <= 2); other errors at {3 * bound} clients: {rows[3 * bound].get('other_errors', 0)}")
PY
