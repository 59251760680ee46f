#!/usr/bin/env python3
"""llama.cpp's CPU MoE on a model whose MoE layers dominate: the peer of Q-C1 (issue 25).

Writes a whole qwen3moe GGUF with gguf-py (our demo shapes by default: hidden 1024, 8 experts of
3584, top-2, 4 layers; one attention head of 64, a vocabulary of 256 and no tokenizer, so the
experts are nearly all of the work), has llama.cpp's own llama-quantize make each requested type
from its BF16 tensors (`--pure` for q8_0 and q4_k, so every MLP weight is that type, as our
`moe-bench-local --quantize` has them; q4_k_m is llama.cpp's mix), and runs llama-bench on each:
1 token is decode (-n), more are one prompt batch (-p). Prints layer tokens/s (the model's tokens/s
times its layers) as a table and writes them as JSON.

  scripts/llama_cpp_peer.py --bin "$(bash -c 'source scripts/setup.sh; moe_llama_cpp')" \
      --work /tmp/llama-peer --tokens 1,4,16,64,256,1024 --threads 2 --types q8_0,q4_k,q4_k_m,bf16
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

import gguf


def write_model(path, hidden, inter, experts, top_k, layers, vocab, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "qwen3moe")
    head_dim = 64
    w.add_block_count(layers)
    w.add_context_length(4096)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(inter)
    w.add_expert_feed_forward_length(inter)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(experts)
    w.add_expert_used_count(top_k)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("none")

    def bf16(a):
        return gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16

    def add(name, shape, scale=0.02, norm=False):
        a = np.ones(shape, np.float32) if norm else rng.standard_normal(shape, dtype=np.float32) * scale
        if norm:
            w.add_tensor(name, a)
        else:
            data, t = bf16(a)
            w.add_tensor(name, data, raw_dtype=t)

    add("token_embd.weight", (vocab, hidden), 1.0)
    add("output_norm.weight", (hidden,), norm=True)
    add("output.weight", (vocab, hidden))
    for i in range(layers):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", (hidden,), norm=True)
        add(p + "attn_q.weight", (head_dim, hidden))
        add(p + "attn_k.weight", (head_dim, hidden))
        add(p + "attn_v.weight", (head_dim, hidden))
        add(p + "attn_output.weight", (hidden, head_dim))
        add(p + "attn_q_norm.weight", (head_dim,), norm=True)
        add(p + "attn_k_norm.weight", (head_dim,), norm=True)
        add(p + "ffn_norm.weight", (hidden,), norm=True)
        w.add_tensor(p + "ffn_gate_inp.weight", rng.standard_normal((experts, hidden), dtype=np.float32))
        add(p + "ffn_gate_exps.weight", (experts, inter, hidden))
        add(p + "ffn_up_exps.weight", (experts, inter, hidden))
        add(p + "ffn_down_exps.weight", (experts, hidden, inter))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with llama-bench and llama-quantize (setup.sh moe_llama_cpp)")
    ap.add_argument("--work", required=True, help="folder for the GGUF files (~1 GB)")
    ap.add_argument("--tokens", default="1,4,16,64,256,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default="q8_0,q4_k,q4_k_m,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=3584)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    tokens = [int(t) for t in args.tokens.split(",")]
    shape = f"h{args.hidden}-i{args.inter}-e{args.experts}-k{args.top_k}-l{args.layers}"
    source = os.path.join(args.work, f"qwen3moe-{shape}-bf16.gguf")
    if not os.path.exists(source):
        write_model(source + ".tmp", args.hidden, args.inter, args.experts, args.top_k, args.layers, 256, 0)
        os.rename(source + ".tmp", source)
    commit = ""
    commit_file = os.path.join(os.path.dirname(args.bin.rstrip("/")), "COMMIT")
    if os.path.exists(commit_file):
        commit = open(commit_file).read().strip()
    results = {"llama_cpp_commit": commit, "threads": args.threads, "shape": shape, "layer_tokens_per_s": {}}
    for t in args.types.split(","):
        path = source
        if t != "bf16":
            path = os.path.join(args.work, f"qwen3moe-{shape}-{t}.gguf")
            if not os.path.exists(path):
                # llama-quantize's "Q4_K" is Q4_K_M; --pure makes every weight the mix's base type.
                ftype, pure = {"q4_k": ("Q4_K_M", ["--pure"]), "q4_k_m": ("Q4_K_M", []),
                               "q4_k_s": ("Q4_K_S", [])}.get(t, (t.upper(), ["--pure"]))
                subprocess.run([os.path.join(args.bin, "llama-quantize"), *pure, source, path + ".tmp", ftype,
                                str(args.threads)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                os.rename(path + ".tmp", path)
        row = {}
        for n in tokens:
            work = ["-n", "16", "-p", "0"] if n == 1 else ["-p", str(n), "-n", "0", "-b", str(max(n, 32)),
                                                           "-ub", str(max(n, 32))]
            out = subprocess.run([os.path.join(args.bin, "llama-bench"), "-m", path, "-t", str(args.threads),
                                  "-r", str(args.repeats), "-o", "json", *work],
                                 check=True, capture_output=True, text=True).stdout
            runs = json.loads(out)
            # llama-bench's per-repetition samples: the median, like our benchmarks.
            samples = runs[0].get("samples_ts") or [runs[0]["avg_ts"]]
            row[n] = float(np.median(samples)) * args.layers
        results["layer_tokens_per_s"][t] = row
    print(f"llama.cpp {commit or '(commit unknown)'}, {args.threads} threads, qwen3moe {shape}: "
          "layer tokens/s (model tokens/s x layers; medians)")
    print("| type | " + " | ".join(str(n) for n in tokens) + " |")
    print("|---|" + "---|" * len(tokens))
    for t, row in results["layer_tokens_per_s"].items():
        print(f"| {t} | " + " | ".join(f"{row[n]:.0f}" for n in tokens) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
