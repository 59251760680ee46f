"""The whole-model client's memory: moe_serve.hf.from_pretrained never materialises the experts.

Writes a Qwen3-MoE checkpoint of >= 2 GB in the hub's layout (one tensor per expert, bf16, written
by the safetensors package; the config by transformers) whose served blocks (router gate + experts)
are >= 10x its other weights, serves it on a --local router, and in a fresh client process measures
the resident set before loading (Python, torch, transformers and the model's modeling code
imported, a gRPC channel open) and its peak (VmHWM) through from_pretrained and a short greedy
generate(). Checks:
- the model holds exactly the checkpoint's tensors outside the served blocks;
- peak - baseline <= 1.25 x those tensors' bytes (the experts' bytes would be ~15x that);
- its logits on a prompt are those of HF's whole model loaded from the same checkpoint (bf16 both:
  within 5e-2 of the largest, the bf16 tolerance hf_parity_test uses), and generate() makes tokens.
Run by ctest with the torch venv's python (scripts/test.sh passes it as MOE_TORCH_PYTHON).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

from moe_processes import Checks, Cluster

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python")
SHAPE = dict(hidden_size=1024, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
             vocab_size=32768, num_experts=64, num_experts_per_tok=4, moe_intermediate_size=1024,
             intermediate_size=2048, tie_word_embeddings=False, dtype="bfloat16")


def write_checkpoint(folder):
    """Returns (bytes outside the served blocks, bytes of the served blocks)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    config = AutoConfig.for_model("qwen3_moe", **SHAPE)
    config.save_pretrained(folder)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    gen = torch.Generator().manual_seed(3)
    index, sizes = {}, [0, 0]

    def shard(name, tensors):
        save_file(tensors, os.path.join(folder, name), metadata={"format": "pt"})
        for key, t in tensors.items():
            index[key] = name
            sizes[".mlp." in key] += t.numel() * t.element_size()

    def rand(*shape, scale=0.02):
        return (torch.randn(*shape, generator=gen) * scale).to(torch.bfloat16)

    others = {k: (torch.ones(s, dtype=torch.bfloat16) if k.endswith("norm.weight") else rand(*s))
              for k, s in shapes.items() if ".mlp." not in k}
    shard("model-others.safetensors", others)
    e, h, i = SHAPE["num_experts"], SHAPE["hidden_size"], SHAPE["moe_intermediate_size"]
    for layer in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{layer}.mlp."
        tensors = {p + "gate.weight": rand(e, h, scale=0.5)}
        for x in range(e):
            tensors[f"{p}experts.{x}.gate_proj.weight"] = rand(i, h)
            tensors[f"{p}experts.{x}.up_proj.weight"] = rand(i, h)
            tensors[f"{p}experts.{x}.down_proj.weight"] = rand(h, i)
        shard(f"model-layer{layer}.safetensors", tensors)
    json.dump({"metadata": {"total_size": sum(sizes)}, "weight_map": index},
              open(os.path.join(folder, "model.safetensors.index.json"), "w"), indent=1)
    return sizes[0], sizes[1]


CLIENT_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import torch, transformers, moe_serve, moe_serve.hf
transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

client = moe_serve.Client(sys.argv[3], timeout=120)
client.model_info()
moe_serve.hf._causal_lm_class(transformers.AutoConfig.from_pretrained(sys.argv[2]))  # imports the model's code
torch.ones(64, 64) @ torch.ones(64, 64)
baseline = status("VmRSS")
model = moe_serve.hf.from_pretrained(sys.argv[2], client, dtype=torch.bfloat16)
loaded = status("VmRSS"); loaded_peak = status("VmHWM")
ids = torch.tensor([[11, 7, 300, 12, 5]])
with torch.no_grad():
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=0)
    torch.save(model(ids).logits[0].float(), sys.argv[4])
params = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps(dict(baseline=baseline, loaded=loaded, loaded_peak=loaded_peak, peak=status("VmHWM"), params=params,
                      names=sorted(n for n, _ in model.named_parameters()), tokens=out[0, 5:].tolist())))
"""


def reference(folder):
    """HF's whole model from the checkpoint (loaded in this process): its logits on the prompt and
    the names of its tensors outside the MLP blocks."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[11, 7, 300, 12, 5]])).logits[0].float()
    return logits, sorted(n for n, _ in model.named_parameters() if ".mlp." not in n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    folder = os.path.join(args.tmp, "hf_client_memory", "qwen3-moe-2gb")
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    check = Checks()
    others, served = write_checkpoint(folder)
    check(served >= 2e9 and served >= 10 * others,
          f"checkpoint: {served / 1e9:.2f} GB in the served blocks, {others / 1e6:.1f} MB outside them "
          f"({served / others:.1f}x)")
    logits_file = os.path.join(args.tmp, "hf_client_memory", "logits.pt")
    cluster = Cluster(args.bin, folder, 0, quiet=True)
    try:
        r = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, CLIENT, folder, cluster.router, logits_file],
                           capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    finally:
        cluster.stop()
    if r.returncode != 0:
        check(False, f"the client process failed: {r.stderr[-2000:]}")
        return check.summary()
    got = json.loads(r.stdout.strip().splitlines()[-1])
    want_logits, want_names = reference(folder)
    check(got["names"] == want_names and got["params"] == others,
          f"the client model holds {len(got['names'])} tensors, {got['params'] / 1e6:.1f} MB: exactly those outside "
          f"the served blocks")
    grew, limit = got["peak"] - got["baseline"], 1.25 * others
    check(grew <= limit,
          f"client peak RSS {got['peak'] / 1e6:.0f} MB = baseline {got['baseline'] / 1e6:.0f} MB + "
          f"{grew / 1e6:.0f} MB through loading and generate() (limit 1.25 x {others / 1e6:.1f} MB = "
          f"{limit / 1e6:.0f} MB; after loading {(got['loaded'] - got['baseline']) / 1e6:.0f} MB, peak while loading "
          f"{(got['loaded_peak'] - got['baseline']) / 1e6:.0f} MB)")
    logits = torch.load(logits_file)
    err = float((logits - want_logits).abs().max() / want_logits.abs().max())
    check(err <= 5e-2 and len(got["tokens"]) == 4,
          f"bf16 logits with the blocks on the router vs HF's whole bf16 model: rel err {err:.2e}; "
          f"generate() made {got['tokens']}")
    shutil.rmtree(folder, ignore_errors=True)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
