#!/usr/bin/env bash
# The moe_serve package as a user gets it: `pip install client/python` into a fresh virtualenv
# (made with the python3 first on PATH; grpcio, protobuf and numpy come from PyPI), its shipped
# stubs checked against proto/ (regenerated with the build's protoc), then python_package_test.py
# against a real local cluster. Args: <bin dir> <repo root> <tmp dir>.
set -euo pipefail
bin="$1"; repo="$2"; tmp="$3/python-package"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$tmp"
mkdir -p "$tmp"

# Stubs in the package == what proto/ generates now.
"$repo/client/python/generate_stubs.sh" "$tmp/stubs"
for f in moe_pb2.py moe_pb2_grpc.py; do
  if ! cmp -s "$tmp/stubs/$f" "$repo/client/python/moe_serve/_proto/$f"; then
    echo "FAIL client/python/moe_serve/_proto/$f is stale: run client/python/generate_stubs.sh"
    exit 1
  fi
done
echo "ok   the package's stubs match proto/moe/v1/moe.proto"

python3 -m venv "$tmp/venv"
# The package is copied first: pip would otherwise write build/ and *.egg-info into the source tree.
cp -r "$repo/client/python" "$tmp/src"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$tmp/src"
# ml_dtypes (numpy's bfloat16) only for the bf16 check; the package does not need it.
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check ml_dtypes==0.5.4
echo "ok   pip install client/python in a fresh venv ($("$tmp/venv/bin/python" -m pip list 2>/dev/null |
  grep -iE '^(moe-serve|grpcio|protobuf|numpy) ' | tr -s ' ' | paste -sd, -))"

model="$tmp/model"
"$bin/moe-make-checkpoint" --out="$model" --hidden_size=48 --intermediate_size=40 --num_experts=6 \
  --top_k=2 --num_layers=2 --dtype=f32 --seed=11 >/dev/null
cd "$tmp"  # not the source tree: the installed package must be what is imported
exec "$bin/moe-cluster" --checkpoint="$model" --workers=2 -- \
  "$tmp/venv/bin/python" "$here/python_package_test.py" "$model"
