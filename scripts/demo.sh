#!/usr/bin/env bash
# scripts/demo.sh — on a fresh Debian 12 machine: install what is missing, build, then run the
# main job: generate a Mixtral-shaped checkpoint (8 experts, top-2, hidden 1024, intermediate
# 3584, 4 layers, bf16), start a local cluster (4 workers × 2 experts + a router, each its own
# process on loopback), send 512 tokens through every layer, print the per-expert load table and
# the parity against the in-process path, and shut everything down. Then the same with a GGUF
# file, llama.cpp's format (a Qwen3-MoE-shaped model with Q4_K experts, served as stored). Where PyTorch is already
# installed (the cached venv of scripts/test.sh), also offload a tiny Hugging Face Mixtral's MoE
# blocks to a cluster with moe_serve.hf and generate (client/python/examples/hf_offload.py), and
# stream text from a prompt with `python -m moe_serve.generate` on a tiny Qwen3-MoE with a tokenizer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_build

MODEL="${MOE_DEMO_MODEL:-$BUILD/demo-model}"
if [ ! -f "$MODEL/config.json" ]; then
  echo "== generating the demo checkpoint in $MODEL"
  "$BUILD/bin/moe-make-checkpoint" --out="$MODEL" --hidden_size=1024 --intermediate_size=3584 \
    --num_experts=8 --top_k=2 --num_layers=4 --dtype=bf16 --shards=2 --seed=2026
fi
echo "== starting a local cluster and sending 512 tokens through every layer"
"$BUILD/bin/moe-cluster" --checkpoint="$MODEL" --workers=4 --worker_flags="--threads=1" -- \
  moe-client --router={router} --tokens=512 --all_layers --dtype=bf16 --check --checkpoint="$MODEL"

GGUF="${MOE_DEMO_GGUF:-$BUILD/demo-qwen3moe-q4_k.gguf}"
if [ ! -f "$GGUF" ]; then
  echo "== generating a GGUF file (llama.cpp's format: qwen3moe, Q4_K experts) in $GGUF"
  "$BUILD/bin/moe-make-checkpoint" --format=gguf --family=qwen3_moe --quant=q4_k --out="$GGUF" \
    --hidden_size=1024 --intermediate_size=768 --num_experts=16 --top_k=4 --num_layers=2 --seed=2026
fi
echo "== serving the GGUF file as it is (experts resident in Q4_K) and sending 256 tokens through every layer"
"$BUILD/bin/moe-cluster" --checkpoint="$GGUF" --workers=2 --worker_flags="--threads=1" -- \
  moe-client --router={router} --tokens=256 --all_layers --check --checkpoint="$GGUF"

if TORCH_PYTHON="$(moe_torch_env_if_present)"; then
  echo "== Hugging Face transformers: a tiny Mixtral's MoE blocks offloaded to moe-serve (moe_serve.hf)"
  HF_MODEL="$BUILD/demo-hf-mixtral"
  [ -f "$HF_MODEL/config.json" ] || "$TORCH_PYTHON" "$ROOT/client/python/examples/hf_offload.py" --make "$HF_MODEL"
  "$BUILD/bin/moe-cluster" --checkpoint="$HF_MODEL" --workers=2 --worker_flags="--threads=1" -- \
    "$TORCH_PYTHON" "$ROOT/client/python/examples/hf_offload.py" --model "$HF_MODEL"
  echo "== a whole model from a small client: python -m moe_serve.generate (a tiny random Qwen3-MoE with a"
  echo "   trained BPE tokenizer; its weights are random, so the text is noise; speed and time split on stderr)"
  CHAT_MODEL="$BUILD/demo-hf-chat-model"
  [ -f "$CHAT_MODEL/config.json" ] || "$TORCH_PYTHON" "$ROOT/client/python/examples/tiny_chat_model.py" --out "$CHAT_MODEL"
  PYTHONPATH="$ROOT/client/python" "$BUILD/bin/moe-cluster" --checkpoint="$CHAT_MODEL" --workers=2 \
    --worker_flags="--threads=1" -- "$TORCH_PYTHON" -m moe_serve.generate --checkpoint "$CHAT_MODEL" \
    --router={router} --prompt "Once upon a time" --chat --max-new-tokens 24
  echo
else
  echo "== (PyTorch not installed here: scripts/test.sh installs it; then the demo also shows moe_serve.hf.offload)"
fi
