#!/usr/bin/env bash
# tests/integration/help_test.sh BIN SRC — every program's --help names the program, shows an
# example line, and lists every flag its main defines (read from the source's ABSL_FLAG lines),
# none of Abseil's own.
set -uo pipefail
bin=$1 src=$2
declare -A mains=(
  [moe-router]=server/router/router_main.cc [moe-expert]=server/worker/expert_main.cc
  [moe-cluster]=server/cluster/cluster_main.cc [moe-client]=client/client_main.cc
  [moe-bench]=client/bench_main.cc [moe-bench-local]=bench/bench_local_main.cc
  [moe-expert-bench]=bench/expert_bench_main.cc [moe-bench-codec]=bench/codec_bench_main.cc
  [moe-bench-metrics]=bench/metrics_bench_main.cc [moe-make-checkpoint]=tools/make_checkpoint_main.cc
  [moe-routing-study]=tools/routing_study_main.cc [moe-forward-example]=client/examples/forward_example.cc
  [moe-placement]=tools/placement_main.cc)
passed=0 failed=0
for program in "${!mains[@]}"; do
  out=$(timeout 20 "$bin/$program" --help 2>&1)
  problems=()
  # Here-strings, not pipes: `echo | grep -q` under pipefail fails when grep exits early and echo
  # gets SIGPIPE (seen once on a loaded machine: a flag reported missing that was there).
  grep -q "^$program: " <<<"$(head -n 1 <<<"$out")" || problems+=("first line does not name the program")
  grep -q "^  $program --" <<<"$out" || problems+=("no example line")
  grep -q "No flags matched" <<<"$out" && problems+=("No flags matched")
  grep -q -- "--flagfile" <<<"$out" && problems+=("lists Abseil's own flags")
  for flag in $(sed -n 's/^ABSL_FLAG([^,]*,[[:space:]]*\([a-z0-9_]*\),.*/\1/p' "$src/${mains[$program]}"); do
    grep -q -e "--$flag " -e "--$flag$" <<<"$out" || problems+=("--$flag missing")
  done
  if [ ${#problems[@]} -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL $program: ${problems[*]}"; head -n 20 <<<"$out"; fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
