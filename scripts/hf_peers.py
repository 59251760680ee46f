"""scripts/hf_peers.py — the peers of performance.md C1: Hugging Face transformers' own Mixtral
sparse MoE block, and one expert computed the way that block computes it, in PyTorch from PyPI.

Run by scripts/bench.sh beside moe-bench-local, on the same shapes and thread count, in the cached
venv of scripts/setup.sh (moe_torch_env: torch and transformers pinned there):
  expert_ffn  one SwiGLU expert on m tokens as MixtralExperts does it: linear(x, gate_up_proj[e])
              split in two, act(gate) * up, linear(·, down_proj[e]);
  moe_block   transformers.models.mixtral.MixtralSparseMoeBlock.forward on [1, m, H]: the code a
              user would otherwise run, with each experts implementation of --impls (a model
              built by transformers 5.x picks grouped_mm; a standalone block eager); the
              comparison in scripts/bench.sh takes the faster of them at each size.
Both in --dtype (bf16 or f32). Weights and inputs are seeded random normals; with --inputs (the
file `moe-bench-local --inputs_out` writes) the block's gate weight and its inputs are moe-serve's,
so that both route the same tokens to the same experts: at a few tokens the time is the bytes of
the experts touched, and two random routings can touch 4 or 8. Prints a table (with the experts
each batch touches) and the kernels PyTorch reports; --json writes the rows.
"""
import argparse
import json
import time

import torch
import transformers
from transformers.models.mixtral.configuration_mixtral import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock


def median_seconds(fn, repeats):
    fn()  # warm-up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden_size", type=int, default=1024)
    p.add_argument("--intermediate_size", type=int, default=3584)
    p.add_argument("--num_experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--tokens", default="1,4,16,64,256,1024")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--impls", default="eager,grouped_mm")
    p.add_argument("--inputs", default="", help="safetensors with gate.weight and x.<tokens> (moe-bench-local --inputs_out)")
    p.add_argument("--json", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(2026)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    h, i, e, k = a.hidden_size, a.intermediate_size, a.num_experts, a.top_k
    tokens = [int(t) for t in a.tokens.split(",") if t]
    blocks = {}
    for impl in a.impls.split(","):
        config = MixtralConfig(hidden_size=h, intermediate_size=i, num_local_experts=e, num_experts_per_tok=k)
        config._experts_implementation = impl
        torch.manual_seed(2026)
        block = MixtralSparseMoeBlock(config).eval()
        with torch.no_grad():
            block.gate.weight.normal_(0, h**-0.5)
            block.experts.gate_up_proj.normal_(0, h**-0.5)
            block.experts.down_proj.normal_(0, i**-0.5)
        blocks[impl] = block.to(dtype)
    shared = {}
    if a.inputs:
        from safetensors.torch import load_file
        shared = load_file(a.inputs)
        with torch.no_grad():
            for block in blocks.values():
                block.gate.weight.copy_(shared["gate.weight"].to(dtype))
    experts = next(iter(blocks.values())).experts
    gate = next(iter(blocks.values())).gate

    def block_input(m):
        x = shared[f"x.{m}"] if f"x.{m}" in shared else torch.randn(m, h)
        return x.reshape(1, m, h).to(dtype)

    def experts_touched(x):
        logits = torch.nn.functional.linear(x.reshape(-1, h), gate.weight)
        return int(torch.unique(torch.topk(logits, k, dim=-1).indices).numel())

    def ffn(x):
        gate, up = torch.nn.functional.linear(x, experts.gate_up_proj[0]).chunk(2, dim=-1)
        return torch.nn.functional.linear(experts.act_fn(gate) * up, experts.down_proj[0])

    print(f"hf_peers: torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}), transformers {transformers.__version__} "
          f"MixtralSparseMoeBlock (experts implementations {a.impls}), {a.dtype}, {torch.get_num_threads()} threads, "
          f"H={h} I={i} E={e} top-{k}")
    rows = []
    with torch.inference_mode():
        for m in tokens:
            x = torch.randn(m, h).to(dtype)
            med, lo, hi = median_seconds(lambda: ffn(x), a.repeats)
            rows.append({"bench": "expert_ffn", "tokens": m, "median_s": med, "min_s": lo, "max_s": hi,
                         "gflops": 6.0 * m * h * i / med / 1e9})
        for impl, block in blocks.items():
            for m in tokens:
                x = block_input(m)
                med, lo, hi = median_seconds(lambda: block(x), a.repeats)
                rows.append({"bench": "moe_block", "impl": impl, "tokens": m, "median_s": med, "min_s": lo,
                             "max_s": hi, "tokens_per_s": m / med, "experts_touched": experts_touched(x)})
    print(f"{'bench':>22} {'tokens':>7} {'median ms':>10} {'GFLOP/s':>8} {'tokens/s':>9} {'experts':>8}")
    for r in rows:
        name = r["bench"] + (f" {r['impl']}" if "impl" in r else "")
        print(f"{name:>22} {r['tokens']:>7} {r['median_s'] * 1e3:>10.3f} {r.get('gflops', 0):>8.1f} "
              f"{r['tokens'] / r['median_s']:>9.0f} {r.get('experts_touched', ''):>8}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "dtype": a.dtype,
                       "threads": torch.get_num_threads(), "results": rows}, f)


if __name__ == "__main__":
    main()
