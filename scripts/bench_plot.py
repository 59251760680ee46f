"""Draws one PNG from a scripts/bench.sh run: the MoE layer's tokens/s against the batch size
(in-process, router --local, networked, and Hugging Face's block, bf16 weights) and the latency
CDF of the networked Forwards at each batch size beside the empty round trip (P6).
Usage: bench_plot.py <bench output folder> <png> [<title line>] (default title: the in-process
run's CPU and kernels line). Run by scripts/bench.sh with the benchmark venv's python (matplotlib
from PyPI)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    out, png = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else load(f"{out}/local.json").get("device", "")
    local = {r["tokens"]: r["tokens"] / r["median_s"] for r in load(f"{out}/local.json")["results"]
             if r["bench"] == "moe_layer"}
    router_local = {r["tokens"]: r["tokens_per_s"] for r in load(f"{out}/router_local.json")["results"]}
    networked_runs = load(f"{out}/networked.json")["results"]
    networked = {r["tokens"]: r["tokens_per_s"] for r in networked_runs}
    hf = {}
    for r in load(f"{out}/hf_bf16.json")["results"]:
        if r["bench"] == "moe_block":
            hf[r["tokens"]] = max(hf.get(r["tokens"], 0), r["tokens_per_s"])

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for series, label, style in ((local, "in-process (moe-bench-local)", "o-"),
                                 (router_local, "router --local (one gRPC hop)", "s-"),
                                 (networked, "networked (router + 4 workers)", "^-"),
                                 (hf, "HF transformers' block (PyTorch)", "x--")):
        xs = sorted(t for t in series if series[t] > 0)
        left.plot(xs, [series[t] for t in xs], style, label=label)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("tokens per Forward")
    left.set_ylabel("tokens/s (bf16 weights)")
    left.set_title("MoE layer throughput")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    ping = load(f"{out}/p6.json")["results"]
    for r in ping + networked_runs:
        q = r.get("quantiles_s") or []
        if not q:
            continue
        label = "empty round trip" if r["tokens"] == 0 else (
            f"{r['tokens']} token{'s' if r['tokens'] > 1 else ''}" + (" (tiny model)" if r in ping else ""))
        right.plot([v * 1e3 for v in q], [i / (len(q) - 1) for i in range(len(q))], label=label)
    right.set_xscale("log")
    right.set_xlabel("latency, ms")
    right.set_ylabel("fraction of requests")
    right.set_title("Networked Forward latency CDF (1 client)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"bench_plot: wrote {png}")


if __name__ == "__main__":
    main()
