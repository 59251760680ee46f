# scripts/netns.sh — sourced, not run: hosts in network namespaces of their own, for the tests
# and benchmarks that need real links between processes (tests/integration/multihost_test.sh,
# scripts/overlap_bench.sh). Needs root.
#   moe_netns_up PREFIX HOSTS NAME=ADDR...
#     a namespace PREFIX-net holding a bridge br0, and for each NAME a namespace PREFIX-NAME whose
#     eth0 (ADDR/24, up, with lo) is one end of a veth pair; the other end, named NAME, is on the
#     bridge (so `tc -n PREFIX-net ... dev NAME` shapes the traffic towards NAME, and
#     `tc -n PREFIX-NAME ... dev eth0` the traffic from it). HOSTS ("ADDR NAME" lines) becomes
#     /etc/netns/PREFIX-NAME/hosts, so names resolve the way cluster DNS would.
#   moe_netns_down PREFIX NAME...  removes all of it (quietly; safe to call twice).
moe_netns_up() {
  local p="$1" hosts="$2" spec h
  shift 2
  ip netns add "$p-net"
  ip -n "$p-net" link add br0 type bridge
  ip -n "$p-net" link set br0 up
  for spec in "$@"; do
    h="${spec%%=*}"
    ip netns add "$p-$h"
    ip link add eth0 netns "$p-$h" type veth peer name "$h" netns "$p-net"
    ip -n "$p-$h" addr add "${spec#*=}/24" dev eth0
    ip -n "$p-$h" link set eth0 up
    ip -n "$p-$h" link set lo up
    ip -n "$p-net" link set "$h" master br0 up
    mkdir -p "/etc/netns/$p-$h"
    printf '127.0.0.1 localhost\n%s\n' "$hosts" > "/etc/netns/$p-$h/hosts"
  done
}
moe_netns_down() {
  local p="$1" h
  shift
  for h in net "$@"; do
    ip netns del "$p-$h" 2>/dev/null || true
    rm -rf "/etc/netns/$p-$h"
  done
}
