"""Offload a Hugging Face transformers model's MoE blocks to moe-serve and generate.

    # a tiny random Mixtral written by transformers (any served checkpoint works the same way)
    python hf_offload.py --make /tmp/tiny-mixtral
    # serve it (router + 2 workers) and run this script against the router
    moe-cluster --checkpoint=/tmp/tiny-mixtral --workers=2 -- python hf_offload.py --model /tmp/tiny-mixtral

Generates greedily with the unmodified model, then with every MoE block on the router
(moe_serve.hf.offload), and prints both. Run by scripts/demo.sh when PyTorch is available.
"""
import argparse
import os
import sys

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # source tree, if not installed
import moe_serve  # noqa: E402
import moe_serve.hf  # noqa: E402


def make(folder):
    config = transformers.MixtralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                                        num_experts_per_tok=2, vocab_size=128, tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    print(f"hf_offload: wrote a tiny random Mixtral to {folder}")


def run(folder, router):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = torch.tensor([[1, 17, 42, 7, 99]])
    with torch.no_grad():
        local = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
        with moe_serve.Client(router) as client:
            info = client.model_info()
            offloaded = moe_serve.hf.offload(model, client)  # the local MoE blocks are dropped
            remote = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    print(f"hf_offload: router {router} serves {info.model_type} ({info.num_experts} experts, top-{info.top_k}, "
          f"{len(info.workers)} workers); offloaded layers {offloaded.layers}")
    print(f"  generated locally:        {local[0, 5:].tolist()}")
    print(f"  generated with moe-serve: {remote[0, 5:].tolist()}")
    same = torch.equal(local, remote)
    print(f"  {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--make", help="write a tiny random Mixtral to this folder and exit")
    ap.add_argument("--model", help="the checkpoint folder the router serves")
    ap.add_argument("--router", default=os.environ.get("MOE_ROUTER", "localhost:50051"))
    args = ap.parse_args()
    if args.make:
        make(args.make)
        sys.exit(0)
    sys.exit(run(args.model, args.router))
