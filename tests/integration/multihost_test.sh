#!/usr/bin/env bash
# Router, two workers and the client, each in its own network namespace (veth pairs on a bridge
# that lives in a namespace of its own, addresses on a private test subnet that exists only in
# these namespaces), names resolved through /etc/netns/<ns>/hosts the way cluster DNS would. A real
# request flow with parity, then worker 1's link cut and restored (multihost_check.py), then made
# lossy (tc tbf with a tiny queue drops packets; TCP retransmits): answers still exact.
# Args: <bin dir> <python stubs dir> <tmp dir>. Exit 77 (skip) where namespaces cannot be made.
set -euo pipefail
bin="$1"; stubs="$2"; tmp="$3/multihost"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/netns.sh"
p="moe$$"
if [ "$(id -u)" != 0 ] || ! ip netns add "$p-probe" 2>/dev/null; then echo "SKIP: needs root for network namespaces"; exit 77; fi
ip netns del "$p-probe"
rm -rf "$tmp" && mkdir -p "$tmp"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  moe_netns_down "$p" router w0 w1 client
}
trap cleanup EXIT
declare -A addr=([router]=10.213.7.10 [w0]=10.213.7.11 [w1]=10.213.7.12 [client]=10.213.7.20)
moe_netns_up "$p" "${addr[router]} moe-router
${addr[w0]} expert-0.experts
${addr[w1]} expert-1.experts" router="${addr[router]}" w0="${addr[w0]}" w1="${addr[w1]}" client="${addr[client]}"
model="$tmp/model"
"$bin/moe-make-checkpoint" --out="$model" --hidden_size=64 --intermediate_size=48 --num_experts=8 --top_k=2 \
  --num_layers=2 --dtype=f32 --seed=9 >/dev/null
# Start a server in namespace $1; wait for it to report its port on a FIFO (no sleeps).
start() {
  local ns="$1"; shift
  mkfifo "$tmp/$ns.ready"
  ip netns exec "$p-$ns" "$@" --ready_fd=3 --metrics_port=-1 3>"$tmp/$ns.ready" 2>>"$tmp/servers.log" &
  pids+=($!)
  local line=""
  read -r line < "$tmp/$ns.ready" || true
  [ -n "$line" ] || { cat "$tmp/servers.log"; echo "FAIL: $ns did not start"; exit 1; }
}
start w0 "$bin/moe-expert" --checkpoint="$model" --shard=0/2 --listen=0.0.0.0:50061
start w1 "$bin/moe-expert" --checkpoint="$model" --shard=1/2 --listen=0.0.0.0:50061
start router "$bin/moe-router" --checkpoint="$model" --workers=expert-0.experts:50061,expert-1.experts:50061 \
  --listen=0.0.0.0:50051 --deadline_ms=3000
echo "ok   router and workers up in their own namespaces, workers found by name"
out=$(ip netns exec "$p-client" "$bin/moe-client" --router=moe-router:50051 --tokens=64 --all_layers --check \
      --checkpoint="$model")
case "$out" in
  *"parity: worst max rel err 0 over 2 layer"*) echo "ok   a request flow across hosts equals the in-process path" ;;
  *) echo "$out"; echo "FAIL: parity across hosts"; exit 1 ;;
esac
check() { ip netns exec "$p-client" env MOE_PY_STUBS="$stubs" /usr/bin/python3 "$here/multihost_check.py" "$1" \
            "$tmp/state.json" moe-router:50051 4,5,6,7; }
check prepare
ip -n "$p-net" link set w1 down
echo "ok   worker 1's link is down"
check cut
ip -n "$p-net" link set w1 up
check restored
# A lossy link: a token bucket with a queue of a few packets on both ends of worker 1's link (no
# sch_netem on these kernels; tbf is there) drops whatever bursts beyond it, so TCP loses real
# packets and retransmits. Requests must still all come back right, only later; the qdisc's own
# drop counters prove the loss happened.
for end in "$p-net w1" "$p-w1 eth0"; do
  set -- $end
  tc -n "$1" qdisc add dev "$2" root tbf rate 40mbit burst 6kb limit 9kb
done
for i in 1 2 3 4 5; do
  out=$(ip netns exec "$p-client" "$bin/moe-client" --router=moe-router:50051 --tokens=256 --all_layers --check \
        --checkpoint="$model" --seed=$i)
  worst=$(echo "$out" | awk '/^parity: worst max rel err/ {print $6}')
  [ -n "$worst" ] && awk -v w="$worst" 'BEGIN { exit !(w <= 1e-6) }' ||
    { echo "$out"; echo "FAIL: a request over the lossy link (try $i): parity ${worst:-missing}"; exit 1; }
done
dropped=0
for end in "$p-net w1" "$p-w1 eth0"; do
  set -- $end
  n=$(tc -s -n "$1" qdisc show dev "$2" | awk '/dropped/ { gsub(",", "", $7); print $7; exit }')
  dropped=$((dropped + ${n:-0}))
done
[ "$dropped" -gt 0 ] || { echo "FAIL: the lossy link dropped no packet (the test would prove nothing)"; exit 1; }
echo "ok   5 requests over worker 1's lossy link ($dropped packets dropped by it) match the in-process path"
echo "7 passed, 0 failed"
