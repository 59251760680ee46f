#!/usr/bin/env bash
# The Open Inference Protocol on the router, spoken by a client nobody here wrote: tritonclient[grpc]
# from PyPI in a fresh virtualenv (python3 first on PATH), against a real cluster (oip_test.py).
# Args: <bin dir> <tmp dir>.
set -euo pipefail
bin="$1"; tmp="$2/oip"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$tmp"
mkdir -p "$tmp"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "tritonclient[grpc]==2.73.0" "numpy==2.2.6"
model="$tmp/model"
"$bin/moe-make-checkpoint" --out="$model" --hidden_size=48 --intermediate_size=40 --num_experts=6 \
  --top_k=2 --num_layers=2 --dtype=f32 --seed=13 >/dev/null
exec "$bin/moe-cluster" --checkpoint="$model" --workers=2 --router_flags=--model_name=tiny -- \
  "$tmp/venv/bin/python" "$here/oip_test.py" "$model"
