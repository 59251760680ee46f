#!/usr/bin/env bash
# scripts/overlap_bench.sh — micro-batch overlap (--micro_batches) against the serial path, on
# loopback-fast links and on rate-limited ones. Router, two workers (the demo model's experts
# split in two, one compute thread each) and the client each run in their own network namespace,
# joined by veth pairs on a bridge (as tests/integration/multihost_test.sh does); a token-bucket
# qdisc (tc tbf, on both ends of each worker's link) limits every router-worker link to
# MOE_LINK_RATES (default "unlimited 1gbit"), as workers on other hosts would be. For each rate
# and each of MOE_MICRO_BATCHES (default "1 2"; 1 = serial): moe-bench at MOE_BENCH_TOKENS
# (default 256,1024) tokens per request, one client. Prints tokens/s and p50 per cell and the
# ratio to the serial path. Needs root (network namespaces); run on a quiet machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
source "$ROOT/scripts/netns.sh"
moe_install_packages
moe_build
B="$BUILD/bin"
MODEL="${MOE_DEMO_MODEL:-$BUILD/demo-model}"
OUT="${MOE_BENCH_OUT:-$BUILD/bench}/overlap"
TOKENS="${MOE_BENCH_TOKENS:-256,1024}"
DURATION="${MOE_BENCH_SECONDS:-4}"
RATES="${MOE_LINK_RATES:-unlimited 1gbit}"
PARTS="${MOE_MICRO_BATCHES:-1 2}"
if [ "$(id -u)" != 0 ] || ! ip netns add "moeov$$-probe" 2>/dev/null; then
  echo "overlap_bench: needs root for network namespaces" >&2; exit 1
fi
ip netns del "moeov$$-probe"
rm -rf "$OUT" && mkdir -p "$OUT"
if [ ! -f "$MODEL/config.json" ]; then
  "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 --num_experts=8 \
    --top_k=2 --num_layers=4 --dtype=bf16 --shards=2 --seed=2026 >/dev/null
fi
p="moeov$$"
hosts=(router w0 w1 client)
declare -A addr=([router]=10.213.9.10 [w0]=10.213.9.11 [w1]=10.213.9.12 [client]=10.213.9.20)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  moe_netns_down "$p" "${hosts[@]}"
}
trap cleanup EXIT
moe_netns_up "$p" "${addr[router]} moe-router
${addr[w0]} expert-0
${addr[w1]} expert-1" router="${addr[router]}" w0="${addr[w0]}" w1="${addr[w1]}" client="${addr[client]}"
# Starts a server in namespace $1 and waits for its port on a FIFO (no sleeps); its pid in $started.
start() {
  local ns="$1"; shift
  rm -f "$OUT/$ns.ready"; mkfifo "$OUT/$ns.ready"
  ip netns exec "$p-$ns" "$@" --ready_fd=3 --metrics_port=-1 3>"$OUT/$ns.ready" 2>>"$OUT/servers.log" &
  started=$!
  pids+=("$started")
  local line=""
  read -r line < "$OUT/$ns.ready" || true
  [ -n "$line" ] || { tail -20 "$OUT/servers.log"; echo "overlap_bench: $ns did not start" >&2; exit 1; }
}
# Both directions of worker $1's link at rate $2 (or no limit).
limit() {
  local w="$1" rate="$2"
  for end in "$p-$w eth0" "$p-net $w"; do
    set -- $end
    tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
    [ "$rate" = unlimited ] || tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst 256kb latency 200ms
  done
}
echo "== micro-batch overlap: router, 2 workers (--threads=1) and client in their own namespaces"
echo "   CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; demo model; links: $RATES"
start w0 "$B/moe-expert" --checkpoint="$MODEL" --shard=0/2 --threads=1 --listen=0.0.0.0:50061
start w1 "$B/moe-expert" --checkpoint="$MODEL" --shard=1/2 --threads=1 --listen=0.0.0.0:50061
for rate in $RATES; do
  limit w0 "$rate"; limit w1 "$rate"
  for parts in $PARTS; do
    start router "$B/moe-router" --checkpoint="$MODEL" --workers=expert-0:50061,expert-1:50061 \
      --listen=0.0.0.0:50051 --micro_batches="$parts" --micro_batch_min_tokens=128
    router_pid=$started
    ip netns exec "$p-client" "$B/moe-bench" --router=moe-router:50051 --tokens="$TOKENS" --duration_s="$DURATION" \
      --json="$OUT/overlap_${rate}_${parts}.json" >/dev/null 2>>"$OUT/servers.log"
    kill "$router_pid"; wait "$router_pid" 2>/dev/null || true
  done
done
/usr/bin/python3 - "$OUT" "$RATES" "$PARTS" <<'PY'
import json, sys
out, rates, parts = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print(f"{'link':>10} {'tokens':>7} " + " ".join(f"{'mb=' + m + ' tok/s':>13} {'p50 ms':>8}" for m in parts)
      + "  " + " ".join(f"{'mb=' + m + '/serial':>12}" for m in parts[1:]))
for rate in rates:
    runs = {m: {r["tokens"]: r for r in json.load(open(f"{out}/overlap_{rate}_{m}.json"))["results"]} for m in parts}
    for t in sorted(runs[parts[0]]):
        cells = " ".join(f"{runs[m][t]['tokens_per_s']:>13.0f} {runs[m][t]['p50_s'] * 1e3:>8.2f}" for m in parts)
        ratios = " ".join(f"{runs[m][t]['tokens_per_s'] / runs[parts[0]][t]['tokens_per_s']:>12.2f}" for m in parts[1:])
        print(f"{rate:>10} {t:>7} {cells}  {ratios}")
PY
