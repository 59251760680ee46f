#!/usr/bin/env bash
# scripts/soak.sh [minutes] — soak with chaos (issue 13): a router and 3 workers on loopback, every
# expert on two of them in a split layout (0-5 | 0-1,4-7 | 2-3,6-7). It first measures capacity
# (8 closed-loop clients, 16 tokens a request, 10 s), then offers --rate = 70 % of it for
# `minutes` (default 30) from 8 paced clients. Each minute one worker, in turn, is stopped 20 s
# in — SIGKILL on odd minutes, SIGTERM (drain) on even ones — and started again 5 s later on the
# same port. Per minute it records tokens/s, p50/p99, failed requests by status code, and the
# resident memory and open file descriptors of the router and every worker; at the end it prints
# a summary, draws $MOE_SOAK_OUT/soak.png (scripts/soak_plot.py, matplotlib in the benchmark
# venv when it is there) and fails (exit 1) on any failed request, or if the router's memory or
# descriptors grew more than 10 % after its first 5 minutes. Writes the per-minute JSON of
# moe-bench, soak.csv and the logs to $MOE_SOAK_OUT (default build/soak). Not part of
# scripts/test.sh (it takes the minutes it is given); run it on a quiet machine.
# MOE_SOAK_ROUTER_WRAPPER runs the router under a tool, e.g. "heaptrack -o build/soak/router" (the
# memory and descriptors reported are then the router's own process, found by name).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_build
B="$BUILD/bin"
MINUTES="${1:-30}"
OUT="${MOE_SOAK_OUT:-$BUILD/soak}"
mkdir -p "$OUT"
rm -f "$OUT"/minute*.json "$OUT/soak.csv" "$OUT"/*.log
MODEL="$BUILD/soak-model"
[ -f "$MODEL/config.json" ] || "$B/moe-make-checkpoint" --out="$MODEL" --hidden_size=256 --intermediate_size=512 \
  --num_experts=8 --top_k=2 --num_layers=2 --dtype=bf16 --seed=13 >/dev/null
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LAYOUT=("0-5" "0-1,4-7" "2-3,6-7")
PORTS=() PIDS=()
start_worker() {  # $1 = index
  "$B/moe-expert" --checkpoint="$MODEL" --experts="${LAYOUT[$1]}" --listen="127.0.0.1:${PORTS[$1]}" --threads=1 \
    --metrics_port=-1 >>"$OUT/worker$1.log" 2>&1 &
  PIDS[$1]=$!
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "nan"; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
cleanup() { kill "${PIDS[@]}" "${ROUTER_REAL_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in 0 1 2; do PORTS[$i]=$(free_port); start_worker "$i"; done
# The router writes its port to --ready_fd once SERVING, after it has met every worker.
rm -f "$OUT/ready"; mkfifo "$OUT/ready"
# shellcheck disable=SC2206
WRAPPER=(${MOE_SOAK_ROUTER_WRAPPER:-})
"${WRAPPER[@]}" "$B/moe-router" --checkpoint="$MODEL" --listen="127.0.0.1:0" --metrics_port=-1 --ready_fd=3 \
  --workers="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}" 3>"$OUT/ready" >>"$OUT/router.log" 2>&1 &
ROUTER_PID=$!
read -r -t 120 ROUTER_PORT _ <"$OUT/ready"
ROUTER_PORT="${ROUTER_PORT%% *}"
ROUTER_REAL_PID=$ROUTER_PID
if [ ${#WRAPPER[@]} -gt 0 ]; then ROUTER_REAL_PID=$(pgrep -n -f "^$B/moe-router --checkpoint=$MODEL"); fi
BENCH=("$B/moe-bench" --router="127.0.0.1:$ROUTER_PORT" --concurrency=8 --tokens=16)
"${BENCH[@]}" --duration_s=10 --json="$OUT/capacity.json" >/dev/null 2>>"$OUT/bench.log"
RATE=$(/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"][0]; print(round(0.7 * r["tokens_per_s"] / 16))' "$OUT/capacity.json")
echo "== soak: $MINUTES min, router + 3 workers (every expert on two, split), 8 clients x 16 tokens offering $RATE requests/s (70 % of the measured capacity); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "minute,offered_rps,tokens_per_s,p50_ms,p99_ms,failed,errors_by_code,router_rss_mb,router_fds,w0_rss_mb,w0_fds,w1_rss_mb,w1_fds,w2_rss_mb,w2_fds,chaos" >"$OUT/soak.csv"
printf '%6s %10s %8s %8s %7s %-14s %16s %26s  %s\n' minute tokens/s p50_ms p99_ms failed by_code "router MB/fds" "workers MB/fds" chaos
for ((m = 1; m <= MINUTES; m++)); do
  victim=$(((m - 1) % 3))
  signal=$([ $((m % 2)) -eq 1 ] && echo KILL || echo TERM)
  "${BENCH[@]}" --rate="$RATE" --duration_s=60 --warmup=0 --json="$OUT/minute$m.json" >/dev/null 2>>"$OUT/bench.log" &
  bench=$!
  sleep 20                     # pacing of the chaos, not synchronisation
  kill -s "$signal" "${PIDS[$victim]}"
  wait "${PIDS[$victim]}" 2>/dev/null || true   # a drained worker exits on its own
  sleep 5
  start_worker "$victim"
  wait "$bench" || true        # failed requests are counted from its JSON below
  /usr/bin/python3 - "$OUT/minute$m.json" "$m" "$RATE" "$(rss_mb "$ROUTER_REAL_PID")" "$(fds "$ROUTER_REAL_PID")" \
    "$(rss_mb "${PIDS[0]}")" "$(fds "${PIDS[0]}")" "$(rss_mb "${PIDS[1]}")" "$(fds "${PIDS[1]}")" \
    "$(rss_mb "${PIDS[2]}")" "$(fds "${PIDS[2]}")" "SIG$signal worker $victim, restarted" "$OUT/soak.csv" <<'PY'
import json, sys
path, minute, rate, r_rss, r_fds, w0, f0, w1, f1, w2, f2, chaos, csv = sys.argv[1:]
r = json.load(open(path))["results"][0]
codes = " ".join(f"{k}={v}" for k, v in r.get("errors_by_code", {}).items()) or "none"
with open(csv, "a") as f:
    f.write(",".join([minute, rate, f"{r['tokens_per_s']:.0f}", f"{r['p50_s'] * 1e3:.3f}", f"{r['p99_s'] * 1e3:.3f}",
                      str(r["errors"]), codes, r_rss, r_fds, w0, f0, w1, f1, w2, f2, chaos]) + "\n")
print(f"{minute:>6} {r['tokens_per_s']:>10.0f} {r['p50_s'] * 1e3:>8.3f} {r['p99_s'] * 1e3:>8.3f} {r['errors']:>7} "
      f"{codes:<14} {r_rss + '/' + r_fds:>16} {w0 + '/' + f0 + ' ' + w1 + '/' + f1 + ' ' + w2 + '/' + f2:>26}  {chaos}")
PY
done
PLOT_PYTHON="$(moe_torch_env_if_present || true)"
if [ -n "$PLOT_PYTHON" ]; then
  "$PLOT_PYTHON" -c "import matplotlib" 2>/dev/null ||
    "$PLOT_PYTHON" -m pip install -q --disable-pip-version-check matplotlib==3.11.2 >&2 || true
fi
"${PLOT_PYTHON:-/usr/bin/python3}" "$ROOT/scripts/soak_plot.py" "$OUT/soak.csv" "$OUT/soak.png"
