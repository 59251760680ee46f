#!/usr/bin/python3
"""scripts/torch_peers.py — the PyTorch peers of performance.md P1 and P3, measured on this machine.

Run by scripts/bench.sh beside moe-bench-local, on the same shapes and thread count, with Debian's
python3-torch (so through /usr/bin/python3):
  expert_ffn  one SwiGLU expert on m tokens the way Hugging Face's Mixtral expert computes it:
              w2(silu(w1(x)) * w3(x)), three torch.matmul calls in f32 (P1's denominator);
  moe_block   the Mixtral sparse MoE block in eager PyTorch: gate, softmax, top-k, renormalise,
              then a loop over the experts gathering their tokens and index_add_-ing the weighted
              outputs back (P3's denominator).
Weights and inputs are seeded random normals (never zeros). Prints a table; --json writes it.
"""
import argparse
import json
import re
import time

import torch


def median_seconds(fn, repeats):
    fn()  # warm-up
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
    p.add_argument("--tokens", default="1,16,256,1024")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(2026)
    h, i, e, k = a.hidden_size, a.intermediate_size, a.num_experts, a.top_k
    experts = [(torch.randn(i, h) / h**0.5, torch.randn(i, h) / h**0.5, torch.randn(h, i) / i**0.5) for _ in range(e)]
    gate = torch.randn(e, h) / h**0.5
    tokens = [int(t) for t in a.tokens.split(",") if t]

    def ffn(x, w1, w3, w2):
        return torch.matmul(torch.nn.functional.silu(torch.matmul(x, w1.t())) * torch.matmul(x, w3.t()), w2.t())

    def block(x):
        probs = torch.softmax(torch.matmul(x, gate.t()), dim=-1)
        weights, chosen = torch.topk(probs, k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = torch.nn.functional.one_hot(chosen, num_classes=e).permute(2, 1, 0)  # [E, k, tokens]
        for x_id in range(e):
            slot, rows = torch.where(mask[x_id])
            if rows.numel() == 0:
                continue
            y = ffn(x[rows], *experts[x_id]) * weights[rows, slot, None]
            out.index_add_(0, rows, y)
        return out

    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    print(f"torch_peers: torch {torch.__version__} (BLAS {blas.group(1) if blas else '?'}), "
          f"{torch.get_num_threads()} threads, H={h} I={i} E={e} top-{k}")
    rows = []
    with torch.inference_mode():
        for m in tokens:
            x = torch.randn(m, h)
            med, lo, hi = median_seconds(lambda: ffn(x, *experts[0]), a.repeats)
            rows.append({"bench": "expert_ffn", "tokens": m, "median_s": med, "min_s": lo, "max_s": hi,
                         "gflops": 6.0 * m * h * i / med / 1e9})
        for m in tokens:
            x = torch.randn(m, h)
            med, lo, hi = median_seconds(lambda: block(x), a.repeats)
            rows.append({"bench": "moe_block", "tokens": m, "median_s": med, "min_s": lo, "max_s": hi,
                         "tokens_per_s": m / med})
    print(f"{'bench':>11} {'tokens':>7} {'median ms':>10} {'spread ms':>16} {'GFLOP/s | tok/s':>16}")
    for r in rows:
        rate = r.get("gflops", r.get("tokens_per_s"))
        print(f"{r['bench']:>11} {r['tokens']:>7} {r['median_s'] * 1e3:>10.3f} "
              f"{r['min_s'] * 1e3:>7.3f}-{r['max_s'] * 1e3:<8.3f} {rate:>16.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": a.threads, "results": rows}, f)


if __name__ == "__main__":
    main()
