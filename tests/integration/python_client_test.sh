#!/usr/bin/env bash
# Runs python_client_test.py against a real local cluster. Args: <bin dir> <python stubs dir> <tmp dir>.
set -euo pipefail
bin="$1"; stubs="$2"; tmp="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
model="$tmp/python-client-model"
rm -rf "$model"
"$bin/moe-make-checkpoint" --out="$model" --hidden_size=48 --intermediate_size=40 --num_experts=6 \
  --top_k=2 --num_layers=2 --dtype=f32 --seed=5 >/dev/null
# Debian's grpcio and numpy are seen by /usr/bin/python3 only.
MOE_PY_STUBS="$stubs" exec "$bin/moe-cluster" --checkpoint="$model" --workers=3 -- \
  /usr/bin/python3 "$here/python_client_test.py" "$model"
