#!/usr/bin/env bash
# The client examples of docs/CLIENTS.md, run as a reader would: the Python blocks that talk to a
# router (moe_serve and tritonclient, pip-installed into a fresh venv) and the C++ example program
# (bin/moe-forward-example), against a cluster on the checkpoint the docs make. The docs' address
# 127.0.0.1:50051 is replaced by the cluster's router. Args: <bin dir> <repo root> <tmp dir>.
set -euo pipefail
bin="$1"; repo="$2"; tmp="$3/docs-examples"
rm -rf "$tmp"
mkdir -p "$tmp/blocks"
python3 -m venv "$tmp/venv"
cp -r "$repo/client/python" "$tmp/src"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$tmp/src" "tritonclient[grpc]==2.73.0"
# Every ```python block of CLIENTS.md that dials the router (the offload one needs a real model
# folder and is run by scripts/demo.sh as client/python/examples/hf_offload.py instead).
python3 - "$repo/docs/CLIENTS.md" "$tmp/blocks" <<'PY'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S)
n = 0
for b in blocks:
    if "127.0.0.1:50051" not in b or "/path/to" in b:
        continue
    n += 1
    b = b.replace('"127.0.0.1:50051"', 'os.environ["MOE_ROUTER"]')
    open(f"{sys.argv[2]}/block{n}.py", "w").write("import os\n" + b)
print(f"docs_examples: {n} Python blocks from CLIENTS.md")
assert n >= 2, "expected the moe_serve and tritonclient examples"
PY
# The docs' checkpoint (CLIENTS.md, first block), in a folder named model (so models are model-layer-<L>).
"$bin/moe-make-checkpoint" --out="$tmp/model" --hidden_size=64 --intermediate_size=96 --num_experts=8 \
  --top_k=2 --num_layers=2 --dtype=f32 >/dev/null
cd "$tmp"
exec "$bin/moe-cluster" --checkpoint="$tmp/model" --workers=2 -- bash -c '
  set -e
  for b in blocks/*.py; do
    echo "== $b"; "'"$tmp"'/venv/bin/python" "$b"; echo "ok   $b"
  done
  echo "== moe-forward-example"; moe-forward-example --router="$MOE_ROUTER"; echo "ok   moe-forward-example"'
