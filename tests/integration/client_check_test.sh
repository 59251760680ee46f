#!/usr/bin/env bash
# moe-client --check through a real cluster on a model with shared experts and a dense first layer
# (DeepSeek-V3 layout) — serial, per-expert wire form, micro-batched — then on dbrx, longcat_flash and bailing_moe checkpoints: every layer's
# networked output must match the in-process reference.
# Args: <bin dir> <tmp dir>.
set -euo pipefail
bin="$1"; tmp="$2/client-check"
rm -rf "$tmp"
"$bin/moe-make-checkpoint" --family=deepseek_v3 --out="$tmp/model" --hidden_size=64 --intermediate_size=32 \
  --num_experts=8 --top_k=2 --num_layers=3 --dtype=f32 --seed=4 >/dev/null
out=$("$bin/moe-cluster" --checkpoint="$tmp/model" --workers=2 --nometrics -- moe-client --tokens=48 --all_layers \
      --check --checkpoint="$tmp/model" 2>/dev/null)
echo "$out" | grep -E "^layer|check vs|parity"
worst=$(echo "$out" | awk '/^parity: worst max rel err/ {print $6}')
[ -n "$worst" ] && awk -v w="$worst" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL: parity $worst"; exit 1; }
# The per-expert wire form (--noeach_token_once), with the shared experts on a worker too.
out=$("$bin/moe-cluster" --checkpoint="$tmp/model" --workers=2 --nometrics --shared_on_workers \
      --router_flags="--noeach_token_once" -- moe-client --tokens=48 --all_layers --check --checkpoint="$tmp/model" 2>/dev/null)
worst=$(echo "$out" | awk '/^parity: worst max rel err/ {print $6}')
echo "per-expert form, shared experts on workers: parity ${worst:-missing}"
[ -n "$worst" ] && awk -v w="$worst" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL: per-expert parity $worst"; exit 1; }
# Micro-batched dispatches (--micro_batches, 3 uneven parts of the 48 tokens): the same answers.
out=$("$bin/moe-cluster" --checkpoint="$tmp/model" --workers=2 --nometrics \
      --router_flags="--micro_batches=3 --micro_batch_min_tokens=16" -- moe-client --tokens=47 --all_layers --check \
      --checkpoint="$tmp/model" 2>/dev/null)
worst=$(echo "$out" | awk '/^parity: worst max rel err/ {print $6}')
echo "micro-batched (3 parts): parity ${worst:-missing}"
[ -n "$worst" ] && awk -v w="$worst" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL: micro-batched parity $worst"; exit 1; }

# Families of new shapes written by moe-make-checkpoint --family: flat [E·I, H] stacks (dbrx),
# zero experts (longcat_flash), Ling's router (bailing_moe): networked equals in-process.
for family in dbrx longcat_flash bailing_moe; do
  rm -rf "$tmp/$family"
  "$bin/moe-make-checkpoint" --family=$family --out="$tmp/$family" --hidden_size=64 --intermediate_size=32 \
    --num_experts=8 --top_k=2 --num_layers=2 --dtype=f32 --seed=5 >/dev/null
  out=$("$bin/moe-cluster" --checkpoint="$tmp/$family" --workers=2 --nometrics -- moe-client --tokens=48 --all_layers \
        --check --checkpoint="$tmp/$family" 2>/dev/null)
  worst=$(echo "$out" | awk '/^parity: worst max rel err/ {print $6}')
  echo "$family: parity ${worst:-missing}"
  [ -n "$worst" ] && awk -v w="$worst" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL: $family parity $worst"; exit 1; }
done
echo "6 passed, 0 failed"
