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
  [moe-routing-study]=tools/routing_study_main.cc)
passed=0 failed=0
for program in "${!mains[@]}"; do
  out=$(timeout 20 "$bin/$program" --help 2>&1)
  problems=()
  echo "$out" | head -n 1 | grep -q "^$program: " || problems+=("first line does not name the program")
  echo "$out" | grep -q "^  $program --" || problems+=("no example line")
  echo "$out" | grep -q "No flags matched" && problems+=("No flags matched")
  echo "$out" | grep -q -- "--flagfile" && problems+=("lists Abseil's own flags")
  for flag in $(sed -n 's/^ABSL_FLAG([^,]*,[[:space:]]*\([a-z0-9_]*\),.*/\1/p' "$src/${mains[$program]}"); do
    echo "$out" | grep -q -- "--$flag " || echo "$out" | grep -q -- "--$flag$" || problems+=("--$flag missing")
  done
  if [ ${#problems[@]} -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL $program: ${problems[*]}"; echo "$out" | head -n 20; fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
