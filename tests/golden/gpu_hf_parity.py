"""Parity of CUDA workers against Hugging Face transformers itself (issue 14, deliverable 4).

For mixtral and qwen2_moe (shared experts, whose MLP the router runs), a tiny random model built by
transformers and written with `save_pretrained`, served by a router and two workers on
`--backend` (cuda on the GPU machine: bf16 weights and activations there), compared for every
layer with the HF module on the same fresh hidden states: relative error <= 1e-2 (bf16) and the
same experts for every token (HF's own choice: the top-k of its router's logits, computed from
the router's weight so that it does not depend on the transformers version's module internals).
Run by scripts/gpu-check.sh with a python that has torch and transformers (any recent version:
only AutoConfig, AutoModelForCausalLM and save_pretrained are used); on the CPU backend by
tests/integration/gpu_check_test.sh as the dry run. Needs only numpy, torch and transformers —
no grpcio (the Forwards go through moe-client). Prints one line per check, then
'N passed, M failed'; exit 1 on any failure.
"""
import argparse
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from moe_processes import Checks, Cluster, run_client

H, E, K, I, LAYERS, N = 64, 8, 2, 96, 2, 37
TOL = 1e-2
SMALL = dict(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
             vocab_size=64, hidden_act="silu", tie_word_embeddings=False)
CASES = [
    ("mixtral", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=I)),
    ("qwen2_moe", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=I, intermediate_size=128,
                       shared_expert_intermediate_size=80, norm_topk_prob=False)),
]


def moe_block(model, layer):
    decoder = model.model.layers[layer]
    for name in ("mlp", "block_sparse_moe"):
        if hasattr(decoder, name):
            return getattr(decoder, name)
    raise RuntimeError(f"no MoE block in {type(decoder).__name__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--backend", default="cuda")
    args = ap.parse_args()
    tmp = os.path.join(args.tmp, "gpu_hf_parity")
    os.makedirs(tmp, exist_ok=True)
    print(f"gpu_hf_parity: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"workers on {args.backend}", flush=True)
    check = Checks()

    rng = np.random.default_rng(14)
    for model_type, fields in CASES:
        torch.manual_seed(14)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **SMALL, **fields)).float().eval()
        refs = []
        with torch.no_grad():
            for layer in range(LAYERS):
                block = moe_block(model, layer)
                # A router spread wide enough that top-k is not decided by rounding.
                block.gate.weight.copy_(torch.from_numpy(rng.normal(0, 2.0 * H ** -0.5, (E, H)).astype(np.float32)))
                x = rng.normal(0, 1, (N, H)).astype(np.float32)
                out = block(torch.from_numpy(x)[None])
                out = (out[0] if isinstance(out, tuple) else out).reshape(N, H).double().numpy()
                logits = torch.from_numpy(x) @ block.gate.weight.T
                experts = [sorted(row) for row in torch.topk(logits, K, dim=-1).indices.tolist()]
                refs.append((x, out, experts))
        ckpt = os.path.join(tmp, model_type)
        shutil.rmtree(ckpt, ignore_errors=True)
        model.save_pretrained(ckpt)
        cluster = Cluster(args.bin, ckpt, 2, quiet=True, worker_flags=f"--backend={args.backend}")
        try:
            for layer, (x, ref, ref_experts) in enumerate(refs):
                got, routing = run_client(args.bin, cluster.router, layer, x, tmp)
                err = np.abs(got - ref).max() / np.abs(ref).max()
                differ = sum(sorted(r["experts"]) != e for r, e in zip(routing, ref_experts))
                check(differ == 0 and err <= TOL,
                      f"{model_type}, layer {layer}, 2 workers on {args.backend}: experts "
                      f"{'identical' if differ == 0 else 'DIFFER'} for {N - differ}/{N} tokens, rel err {err:.2e}")
        finally:
            cluster.stop()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
