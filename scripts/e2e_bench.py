"""End-to-end generation benchmark of the whole-model client (scripts/bench.sh step 11; issue 28).

One Mixtral-shaped model whose MoE layers dominate (hidden 1024, 8 experts of intermediate 3584,
top-2, 8 layers, GQA attention 8/2 heads, vocabulary 8192; random weights written once in bf16 by
transformers' save_pretrained) run three ways, each with the same torch threads:
  (a) Hugging Face transformers' own model in-process (f32 and bf16; the faster is the peer);
  (b) the same model built by moe_serve.hf.from_pretrained, its MoE blocks on a --local router
      (client in f32 and in bf16);
  (c) the same, on a router with 2 workers (1 thread each).
Each row runs in a process of its own; the served rows' client with OMP_WAIT_POLICY=PASSIVE.
For each: prefill tokens/s (one forward of a 256- and a 1024-token prompt) and decode tokens/s
(greedy generate() of 33 tokens after 16, batch 1, the first token excluded), and for (b)/(c) the
decode step split: client compute (attention, norms, lm_head, sampling, Python), the MoE round
trips per layer as the client waits for them, the router's own time per request (its
moe_router_request_duration_seconds), and the non-compute time per MoE layer: the round trip
minus the MoE compute, the compute being (b)'s router time (gating + experts in one process).
Prints a table, writes --json and with --png a plot. PyTorch + transformers from the cached venv (setup.sh).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import moe_serve  # noqa: E402
import moe_serve.hf  # noqa: E402

SHAPE = dict(hidden_size=1024, intermediate_size=3584, num_local_experts=8, num_experts_per_tok=2,
             num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2, head_dim=128, vocab_size=8192,
             max_position_embeddings=4096, tie_word_embeddings=False)
PREFILL = (256, 1024)
PROMPT, DECODE = 16, 32


def make_checkpoint(path):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    torch.manual_seed(2026)
    config = AutoConfig.for_model("mixtral", **SHAPE)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(path, max_shard_size="400MB")


class Marks:
    """A generate() streamer noting when each token came."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def measure(model, stats=None, scrape=None):
    """Prefill and decode of `model`; with `stats` (StepStats) and `scrape` (router metrics), the
    decode step's split."""
    gen = torch.Generator().manual_seed(1)
    out = {}
    with torch.no_grad():
        for n in PREFILL:
            ids = torch.randint(0, SHAPE["vocab_size"], (1, n), generator=gen)
            model(ids[:, :32], logits_to_keep=1)  # warm
            runs = []
            for _ in range(2):
                start = time.perf_counter()
                model(ids, logits_to_keep=1)
                runs.append(time.perf_counter() - start)
            out[f"prefill_{n}_tokens_per_s"] = n / min(runs)
        ids = torch.randint(0, SHAPE["vocab_size"], (1, PROMPT), generator=gen)
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, eos_token_id=None,
                  min_new_tokens=DECODE + 1, max_new_tokens=DECODE + 1)
        model.generate(ids, **{**kw, "min_new_tokens": 4, "max_new_tokens": 4})  # warm
        marks = Marks()
        before = stats.snapshot() if stats else None
        router_before = scrape() if scrape else None
        model.generate(ids, streamer=marks, **kw)
    t = marks.times  # [prompt handed over, first token, then one per decode step]
    steps = len(t) - 2
    decode_s = t[-1] - t[1]
    out["decode_tokens_per_s"] = steps / decode_s
    out["decode_step_ms"] = decode_s / steps * 1e3
    if stats:
        # The round trips of the decode steps only: what the whole generate() made less the
        # prefill's share (one per MoE layer), counted by calls.
        calls, _, seconds = (a - b for a, b in zip(stats.snapshot(), before))
        layers = SHAPE["num_hidden_layers"]
        per_call = seconds / calls
        step_calls = steps * layers
        out["round_trip_ms_per_layer"] = per_call * 1e3
        out["client_compute_ms_per_step"] = (decode_s - per_call * step_calls) / steps * 1e3
        req_s, req_n = (a - b for a, b in zip(scrape(), router_before))
        out["router_ms_per_request"] = req_s / req_n * 1e3
    return out


def router_metrics(address):
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()

    def total(name):
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    return total("moe_router_request_duration_seconds_sum"), total("moe_router_request_duration_seconds_count")


class Cluster:
    def __init__(self, bin_dir, ckpt, workers, threads, env):
        router_flags = f"--threads={threads}" if workers == 0 else ""
        self.proc = subprocess.Popen([f"{bin_dir}/moe-cluster", f"--checkpoint={ckpt}", f"--workers={workers}",
                                      "--worker_flags=--threads=1", f"--router_flags={router_flags}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.router = self.metrics = None
        for line in self.proc.stdout:
            m = re.match(r"moe-cluster: router (\S+) metrics (\S+)", line)
            if m:
                self.router, self.metrics = m.group(1), m.group(2)
            if "running" in line:
                break
        if self.router is None:
            raise RuntimeError(f"moe-cluster did not start (exit {self.proc.wait()})")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


ROWS = {  # row: (label, how the model runs, client dtype, workers)
    "hf-f32": ("(a) HF in-process, f32", "hf", torch.float32, None),
    "hf-bf16": ("(a) HF in-process, bf16", "hf", torch.bfloat16, None),
    "local-f32": ("(b) --local router, client f32", "served", torch.float32, 0),
    "local-bf16": ("(b) --local router, client bf16", "served", torch.bfloat16, 0),
    "workers-f32": ("(c) router + 2 workers, client f32", "served", torch.float32, 2),
    "workers-bf16": ("(c) router + 2 workers, client bf16", "served", torch.bfloat16, 2),
}


def run_row(row, args, ckpt):
    """One row, in this process: the measurement as a dict."""
    label, how, dtype, workers = ROWS[row]
    if how == "hf":
        return measure(AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype).eval())
    # The router and its workers keep the environment the script was started with (spinning
    # OpenMP threads are theirs to choose); only this client waits passively (see below).
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    cluster = Cluster(args.bin, ckpt, workers, args.threads, env)
    try:
        model = moe_serve.hf.from_pretrained(ckpt, cluster.router, dtype=dtype)
        return measure(model, model.moe_serve.steps.stats, lambda: router_metrics(cluster.metrics))
    finally:
        cluster.stop()


def table(rows, cpu, threads):
    compute = rows["local-f32"]["router_ms_per_request"] if "local-f32" in rows else None
    for r in rows.values():
        if "round_trip_ms_per_layer" in r and compute is not None:
            r["non_compute_ms_per_layer"] = r["round_trip_ms_per_layer"] - compute
    hf = [r for k, r in rows.items() if ROWS[k][1] == "hf"]
    best = {k: max(r[k] for r in hf) for k in hf[0] if k.endswith("tokens_per_s")}
    print(f"\ne2e: {cpu}, {threads} threads; tokens/s (prefill: one forward of the prompt; decode: batch 1, "
          "greedy); ratios to the faster HF row; per decode step: the client's compute, per MoE layer the round "
          "trip, the router's time, and round trip - (b) f32's router time (the MoE compute)")
    print(f"{'path':<36} {'prefill 256':>11} {'ratio':>6} {'prefill 1024':>12} {'ratio':>6} {'decode':>7} {'ratio':>6} "
          f"{'step ms':>8} {'client ms':>9} {'RT/layer':>9} {'router':>7} {'non-compute':>11}")
    for k, r in rows.items():
        extra = ""
        if "round_trip_ms_per_layer" in r:
            extra = (f"{r['client_compute_ms_per_step']:>9.2f} {r['round_trip_ms_per_layer']:>9.3f} "
                     f"{r['router_ms_per_request']:>7.3f} {r.get('non_compute_ms_per_layer', float('nan')):>11.3f}")
        cells = []
        for key in ("prefill_256_tokens_per_s", "prefill_1024_tokens_per_s", "decode_tokens_per_s"):
            cells.append(f"{r[key]:>{11 if '256' in key else 12 if '1024' in key else 7}.{2 if 'decode' in key else 0}f} "
                         f"{r[key] / best[key]:>6.2f}")
        print(f"{ROWS[k][0]:<36} {' '.join(cells)} {r['decode_step_ms']:>8.2f} {extra}")


def plot(rows, png, cpu):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(rows)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (metric, title) in zip(axes, (("prefill_256_tokens_per_s", "prefill, 256-token prompt"),
                                          ("prefill_1024_tokens_per_s", "prefill, 1024-token prompt"),
                                          ("decode_tokens_per_s", "decode, batch 1"))):
        colors = ["#888888" if ROWS[k][1] == "hf" else "#1f77b4" if ROWS[k][3] == 0 else "#ff7f0e" for k in keys]
        ax.barh([ROWS[k][0] for k in keys], [rows[k][metric] for k in keys], color=colors)
        ax.set_title(title)
        ax.set_xlabel("tokens/s")
        ax.invert_yaxis()
        if ax is not axes[0]:
            ax.set_yticklabels([])
    fig.suptitle(f"whole model end to end (mixtral, 8 layers, hidden 1024, 8x3584 experts, top-2), {cpu}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"plot: {png}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", required=True)
    ap.add_argument("--png", default="")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    ap.add_argument("--row", default="", help=argparse.SUPPRESS)  # internal: run one row, JSON to stdout
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    ckpt = os.path.join(args.work, "e2e-mixtral-8x1024")
    if args.row:
        print(json.dumps(run_row(args.row, args, ckpt)))
        return
    make_checkpoint(ckpt)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"e2e: {cpu}, {args.threads} threads; torch {torch.__version__}, transformers {transformers.__version__}",
          flush=True)
    rows = {}
    for row in args.rows.split(","):
        # Each row in a process of its own. The served rows' client waits for the router passively
        # (OMP_WAIT_POLICY=PASSIVE, what python -m moe_serve.generate sets): torch's OpenMP threads
        # would otherwise spin through every round trip on the cores the router computes on.
        env = dict(os.environ)
        if ROWS[row][1] == "served":
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        r = subprocess.run([sys.executable, __file__, "--bin", args.bin, "--work", args.work, "--threads",
                            str(args.threads), "--json", args.json, "--row", row], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            sys.exit(f"e2e row {row} failed:\n{r.stderr[-3000:]}")
        rows[row] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{ROWS[row][0]}: {json.dumps({k: round(v, 3) for k, v in rows[row].items()})}", flush=True)
    table(rows, cpu, args.threads)
    json.dump({"cpu": cpu, "threads": args.threads, "shape": SHAPE, "rows": rows}, open(args.json, "w"), indent=1)
    if args.png:
        plot(rows, args.png, cpu)


if __name__ == "__main__":
    main()
