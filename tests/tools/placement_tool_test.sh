#!/usr/bin/env bash
# tests/tools/placement_tool_test.sh BIN TMP — moe-placement on a real checkpoint: every expert is
# placed within each host's memory (room = memory ÷ the expert's resident bytes over its layers);
# with a load profile (a router /metrics scrape) the hot expert gets the redundant replicas and
# the predicted imbalance falls; the printed moe-expert command lines start real workers that a
# router accepts as covering the model; too little memory and bad flags are refused with exit
# codes 1 and 2 and a reason.
set -euo pipefail
bin=$1 tmp=$(mktemp -d "$2/placement.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin/moe-make-checkpoint" --out="$tmp/model" --hidden_size=64 --intermediate_size=128 --num_experts=8 \
  --num_layers=2 --dtype=bf16 --seed=3 >/dev/null
# One bf16 expert: 3 × 64 × 128 × 2 bytes = 48 KiB, 96 KiB over the 2 layers.
out=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:300KiB,b:200KiB,c:100KiB,d:1MiB)
echo "$out"
grep -q "one expert 48.0 KiB resident (96.0 KiB over its layers)" <<<"$out" || fail "expert size"
placed=$(grep -- "--experts=" <<<"$out" | sed 's/.*--experts=\([0-9,]*\) .*/\1/' | tr ',' '\n' | sort -n | uniq | tr '\n' ' ')
[ "$placed" = "0 1 2 3 4 5 6 7 " ] || fail "not every expert placed: $placed"
c_experts=$(grep "^  c:" <<<"$out" | sed 's/.*--experts=\([0-9,]*\) .*/\1/' | tr ',' '\n' | wc -l)
[ "$c_experts" -le 1 ] || fail "host c (room for 1) got $c_experts experts"

# A load profile: expert 3 takes 8 times the others' share.
{
  echo "# TYPE moe_expert_tokens_routed_total counter"
  for e in 0 1 2 3 4 5 6 7; do echo "moe_expert_tokens_routed_total{expert=\"$e\"} $([ $e = 3 ] && echo 800 || echo 100)"; done
} >"$tmp/load.txt"
even=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:1MiB,b:1MiB,c:1MiB,d:1MiB --load="$tmp/load.txt")
spread=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:1MiB,b:1MiB,c:1MiB,d:1MiB --load="$tmp/load.txt" \
  --redundant_experts=3)
echo "$spread"
before=$(sed -n 's/^predicted imbalance.*: \([0-9.]*\)$/\1/p' <<<"$even")
after=$(sed -n 's/^predicted imbalance.*: \([0-9.]*\)$/\1/p' <<<"$spread")
python3 -c "import sys; sys.exit(0 if float('$after') < float('$before') else 1)" || fail "imbalance $before -> $after"
hot=$(grep -- "--experts=" <<<"$spread" | grep -c -E -- "--experts=([0-9]+,)*3(,|[[:space:]])") || true
[ "$hot" -ge 3 ] || fail "the hot expert has $hot replicas"

# The printed commands run: workers on loopback ports, and a router accepts them as covering the model.
cmds=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=127.0.0.1:0:1MiB,127.0.0.2:0:1MiB)
addresses=()
while read -r line; do
  args=${line#*moe-expert }
  fifo="$tmp/ready.${#addresses[@]}"
  mkfifo "$fifo"
  # shellcheck disable=SC2086
  "$bin/moe-expert" $args --listen=127.0.0.1:0 --metrics_port=-1 --threads=1 --ready_fd=3 3>"$fifo" 2>/dev/null &
  read -r -t 60 port _ <"$fifo" || fail "a worker did not start: $args"  # blocks until it reports its port
  addresses+=("127.0.0.1:$port")
done < <(grep "moe-expert" <<<"$cmds")
[ ${#addresses[@]} -eq 2 ] || fail "expected 2 worker commands"
router_log="$tmp/router.log"
mkfifo "$tmp/router.ready"
"$bin/moe-router" --checkpoint="$tmp/model" --workers="$(IFS=,; echo "${addresses[*]}")" --listen=127.0.0.1:0 \
  --metrics_port=-1 --ready_fd=3 3>"$tmp/router.ready" 2>"$router_log" &
# The router writes its port once serving; one that refuses exits and the read sees end of file.
read -r -t 60 port _ <"$tmp/router.ready" || { cat "$router_log"; fail "the router refused the placement"; }

# Refusals.
set +e
small=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:100KiB,b:100KiB 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "do not fit" <<<"$small" || fail "too little memory: rc $rc: $small"
bad=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "is not NAME:SIZE" <<<"$bad" || fail "bad --hosts: rc $rc: $bad"
bad=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:lots 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "not a byte size" <<<"$bad" || fail "bad size: rc $rc: $bad"
bad=$("$bin/moe-placement" --checkpoint="$tmp/model" --hosts=a:1GiB --load="$tmp/model/config.json" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "no moe_expert_tokens_routed_total" <<<"$bad" || fail "bad --load: rc $rc: $bad"
echo "PASS"
