"""GGUF files served exactly: every served architecture and tensor type, in-process and networked.

For each case this makes the weights of a small MoE model (golden_parity_test's families and
NumPy reference), stores them in a GGUF file written by the `gguf` package itself (llama.cpp's
gguf-py from PyPI, not our code) under llama.cpp's tensor names and architecture metadata —
experts stacked per layer as `ffn_{gate,up,down}_exps`, in a quantized type: quantized by gguf-py
(Q8_0, Q4_0, MXFP4) or valid random blocks (the K-quants and IQ4_XS, which gguf-py cannot
quantize) — and takes the reference weights from `gguf.quants.dequantize` of the stored bytes. A
router (and workers) serve the file; every layer's output must match the float64 reference on
those weights to 1e-5 with identical experts for tokens without a near-tie. One case is a split
set (…-00001-of-N); the float types (F32, F16, BF16 — bf16 computed with --cpu_compute=f32) have a
case each, the BF16 one in the older Mixtral layout of one tensor per expert (`ffn_gate.E`). (That workers hold the file's bytes as stored, resident = stored, is
tests/model/gguf/gguf_model_test.cc's.)
A gpt-oss file (MXFP4 experts, biases on the router and every projection, gate values past the
clamp) is checked against its own float64 reference. Then files written by our own `moe-make-checkpoint --format=gguf` (qwen3_moe Q4_K, deepseek_v3
Q6_K with a dense first layer and a shared expert) are read back by gguf-py's GGUFReader — every
tensor's name, type and shape as llama.cpp's reader sees them — and served against the same
reference built from what GGUFReader reads (metadata translated here by llama.cpp's semantics).
Run by ctest in build/venv (numpy, safetensors, gguf).
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_parity_test as golden  # noqa: E402
from moe_processes import Checks, serve_and_compare  # noqa: E402

# K-quants need rows of 256 values: hidden and expert widths of 256.
golden.H, golden.MOE_I, golden.DENSE_I = 256, 256, 64
N_TOKENS = 23

# (label, GGUF architecture, golden family, config overrides, expert type, selection-bias range,
#  split the file into shards of this many tensors (0: one file)).
CASES = [
    ("qwen3moe Q4_K", "qwen3moe", "qwen3_moe", {"norm_topk_prob": True, "mlp_only_layers": []}, T.Q4_K, (0, 0), 0),
    ("qwen2moe Q6_K, shared expert Q8_0", "qwen2moe", "qwen2_moe",
     {"norm_topk_prob": False, "mlp_only_layers": [], "shared_expert_intermediate_size": 256}, T.Q6_K, (0, 0), 0),
    ("llama (Mixtral) Q8_0, split", "llama", "mixtral", {}, T.Q8_0, (0, 0), 6),
    ("llama (Mixtral) IQ4_XS", "llama", "mixtral", {}, T.IQ4_XS, (0, 0), 0),
    ("deepseek2 (V3: sigmoid, bias, groups) Q5_K", "deepseek2", "deepseek_v3", {}, T.Q5_K, (-1.2, -0.6), 0),
    ("deepseek2 (V2: softmax, groups) Q4_0", "deepseek2", "deepseek_v2",
     {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2, "norm_topk_prob": True}, T.Q4_0, (0, 0), 0),
    ("glm4moe MXFP4", "glm4moe", "deepseek_v3", {}, T.MXFP4, (-0.3, 0.3), 0),
    # The float types, and the older Mixtral files with one tensor per expert (`ffn_gate.E`).
    ("llama (Mixtral) BF16, per-expert ffn_gate.E", "llama", "mixtral", {}, T.BF16, (0, 0), 0),
    ("qwen3moe F16", "qwen3moe", "qwen3_moe", {"norm_topk_prob": True, "mlp_only_layers": []}, T.F16, (0, 0), 0),
    ("qwen3moe F32", "qwen3moe", "qwen3_moe", {"norm_topk_prob": True, "mlp_only_layers": []}, T.F32, (0, 0), 0),
]


def random_blocks(rng, qtype, rows, k):
    """Valid blocks of `qtype` for a [rows, k] matrix: random bytes, f16 scales of a size that gives
    weights ~ N(0, 1/k), as uint8 [rows, k / block * type_size]."""
    block, size = GGML_QUANT_SIZES[qtype]
    nb = rows * (k // block)
    b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    offsets = {T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_XS: [0]}[qtype]
    level = {T.Q4_K: 1 / (k ** 0.5 * 63 * 8), T.Q5_K: 1 / (k ** 0.5 * 63 * 16), T.Q6_K: 1 / (k ** 0.5 * 128 * 16),
             T.IQ4_XS: 1 / (k ** 0.5 * 16 * 64)}[qtype]
    for off in offsets:
        b[:, off:off + 2] = (level * rng.uniform(0.5, 1.5, nb)).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return b.reshape(rows, -1)


def stored(rng, qtype, w):
    """(bytes as GGUF stores them, the weights they dequantize to) for f32 w [..., k]."""
    shape = w.shape
    flat = w.reshape(-1, shape[-1])
    if qtype in (T.Q8_0, T.Q4_0, T.MXFP4, T.BF16, T.F16, T.F32):
        q = quantize(flat, qtype)
    else:
        q = random_blocks(rng, qtype, flat.shape[0], shape[-1])
    return q.reshape(*shape[:-1], -1), dequantize(q, qtype).reshape(shape).astype(np.float32)


def write_gguf(path, arch, c, w, qtype, rng, split, per_expert=False):
    """The model `w` (golden's HF names) as a GGUF file: returns the weights the file holds (HF
    names, dequantized), the reference's input. `per_expert`: one tensor per expert and projection
    (`blk.L.ffn_gate.E.weight`, as older llama.cpp Mixtral files hold them) instead of stacks."""
    held = dict(w)
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split)
    k = f"{arch}."
    moe_layers = [layer for layer in range(c["num_hidden_layers"]) if golden.is_moe(c, layer)]
    writer.add_uint32(k + "block_count", c["num_hidden_layers"])
    writer.add_uint32(k + "embedding_length", golden.H)
    writer.add_uint32(k + "expert_count", golden.E)
    writer.add_uint32(k + "expert_used_count", c["num_experts_per_tok"])
    if arch == "llama":
        writer.add_uint32(k + "feed_forward_length", golden.MOE_I)
    else:
        writer.add_uint32(k + "expert_feed_forward_length", golden.MOE_I)
    if arch == "qwen2moe":
        writer.add_uint32(k + "expert_shared_feed_forward_length", c["shared_expert_intermediate_size"])
    if arch in ("deepseek2", "glm4moe"):
        sigmoid = c["model_type"] == "deepseek_v3"
        writer.add_uint32(k + "feed_forward_length", c["intermediate_size"])
        writer.add_uint32(k + "expert_shared_count", c["n_shared_experts"])
        writer.add_uint32(k + "leading_dense_block_count", c["first_k_dense_replace"])
        writer.add_float32(k + "expert_weights_scale", c["routed_scaling_factor"])
        writer.add_bool(k + "expert_weights_norm", c["norm_topk_prob"])
        writer.add_uint32(k + "expert_gating_func", 2 if sigmoid else 1)
        writer.add_uint32(k + "expert_group_count", c.get("n_group", 1))
        writer.add_uint32(k + "expert_group_used_count", c.get("topk_group", 1))
    for layer in range(c["num_hidden_layers"]):
        n = golden.names(c, layer)
        blk = f"blk.{layer}."
        if layer not in moe_layers:  # a dense layer: F16, dequantized exactly
            for p in ("gate", "up", "down"):
                v = w[n["dense"](p)].astype(np.float16)
                writer.add_tensor(blk + f"ffn_{p}.weight", v)
                held[n["dense"](p)] = v.astype(np.float32)
            continue
        writer.add_tensor(blk + "ffn_gate_inp.weight", w[n["gate"]])
        for p in ("gate", "up", "down"):
            stack = np.stack([w[n["expert"](e, p)] for e in range(golden.E)])  # [E, rows, k]
            q, values = stored(rng, qtype, stack)
            if per_expert:
                for e in range(golden.E):
                    writer.add_tensor(blk + f"ffn_{p}.{e}.weight", np.ascontiguousarray(q[e]), raw_dtype=qtype)
            else:
                writer.add_tensor(blk + f"ffn_{p}_exps.weight", q, raw_dtype=qtype)
            for e in range(golden.E):
                held[n["expert"](e, p)] = values[e]
        if c["model_type"] == "deepseek_v3":
            writer.add_tensor(blk + "exp_probs_b.bias", w[n["bias"]])
        if "shared" in n and (c["model_type"] == "qwen2_moe" or c["model_type"].startswith("deepseek")):
            for p in ("gate", "up", "down"):
                q, values = stored(rng, T.Q8_0, w[n["shared"](p)])
                writer.add_tensor(blk + f"ffn_{p}_shexp.weight", q, raw_dtype=T.Q8_0)
                held[n["shared"](p)] = values
        if c["model_type"] == "qwen2_moe":
            writer.add_tensor(blk + "ffn_gate_inp_shexp.weight", w[n["shared_gate"]].reshape(-1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return held


def config_from_gguf(reader):
    """golden's config dict from a GGUF's metadata, as llama.cpp reads it (qwen3moe, deepseek2)."""
    def field(key, default=None):
        f = reader.get_field(key)
        return default if f is None else f.contents()
    arch = field("general.architecture")
    k = arch + "."
    c = {"num_hidden_layers": field(k + "block_count"), "num_experts_per_tok": field(k + "expert_used_count"),
         "hidden_act": "silu"}
    if arch == "qwen3moe":
        c.update(model_type="qwen3_moe", mlp_only_layers=[], decoder_sparse_step=1,
                 norm_topk_prob=field(k + "expert_weights_norm", True))
    elif arch == "deepseek2":
        sigmoid = field(k + "expert_gating_func") == 2
        c.update(model_type="deepseek_v3" if sigmoid else "deepseek_v2",
                 scoring_func="sigmoid" if sigmoid else "softmax",
                 topk_method="noaux_tc" if sigmoid else "greedy",
                 n_group=field(k + "expert_group_count", 1), topk_group=field(k + "expert_group_used_count", 1),
                 routed_scaling_factor=field(k + "expert_weights_scale", 1.0),
                 norm_topk_prob=field(k + "expert_weights_norm", False),
                 first_k_dense_replace=field(k + "leading_dense_block_count", 0), moe_layer_freq=1,
                 n_shared_experts=field(k + "expert_shared_count", 0))
    return c


def weights_from_gguf(reader, c):
    """golden's HF-named f32 weights from every tensor GGUFReader reads, dequantized by gguf-py."""
    t = {x.name: dequantize(x.data, x.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(x.shape)])
         for x in reader.tensors}
    w = {}
    for layer in range(c["num_hidden_layers"]):
        n = golden.names(c, layer)
        blk = f"blk.{layer}."
        if not golden.is_moe(c, layer):
            for p in ("gate", "up", "down"):
                w[n["dense"](p)] = t[blk + f"ffn_{p}.weight"]
            continue
        w[n["gate"]] = t[blk + "ffn_gate_inp.weight"]
        for p in ("gate", "up", "down"):
            for e in range(golden.E):
                w[n["expert"](e, p)] = t[blk + f"ffn_{p}_exps.weight"][e]
        if blk + "exp_probs_b.bias" in t:
            w[n["bias"]] = t[blk + "exp_probs_b.bias"]
        if blk + "ffn_gate_shexp.weight" in t:
            for p in ("gate", "up", "down"):
                w[n["shared"](p)] = t[blk + f"ffn_{p}_shexp.weight"]
    return w


def gptoss_case(path, rng, layers=2, k=2, alpha=1.702, limit=7.0):
    """A gpt-oss GGUF written by gguf-py (MXFP4 experts quantized by it, F32 biases and router),
    and the float64 reference of each layer: logits + bias, top-k, softmax over the k, experts
    (u + 1)·g·σ(αg) with g = min(g, limit), u = clamp(u, ±limit), biases on every product."""
    H, I, E = golden.H, golden.MOE_I, golden.E
    writer = gguf.GGUFWriter(path, "gpt-oss")
    for key, v in (("block_count", layers), ("embedding_length", H), ("expert_count", E), ("expert_used_count", k),
                   ("expert_feed_forward_length", I)):
        writer.add_uint32("gpt-oss." + key, v)
    model = []
    for layer in range(layers):
        blk = f"blk.{layer}."
        m = {"router": rng.normal(0, 2 * H ** -0.5, (E, H)).astype(np.float32),
             "router_bias": rng.normal(0, 0.3, E).astype(np.float32)}
        writer.add_tensor(blk + "ffn_gate_inp.weight", m["router"])
        writer.add_tensor(blk + "ffn_gate_inp.bias", m["router_bias"])
        for p, shape, scale in (("gate", (E, I, H), 10.0), ("up", (E, I, H), 10.0), ("down", (E, H, I), 1.0)):
            w = rng.normal(0, scale * shape[-1] ** -0.5, shape).astype(np.float32)  # gate/up past the clamp
            q, m[p] = stored(rng, T.MXFP4, w)
            writer.add_tensor(blk + f"ffn_{p}_exps.weight", q, raw_dtype=T.MXFP4)
            m[p + "_bias"] = rng.normal(0, 0.5, shape[:2]).astype(np.float32)
            writer.add_tensor(blk + f"ffn_{p}_exps.bias", m[p + "_bias"])
        model.append(m)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    def reference(layer, x):
        m = {n: v.astype(np.float64) for n, v in model[layer].items()}
        logits = x @ m["router"].T + m["router_bias"]
        order = np.argsort(-logits, axis=1, kind="stable")
        chosen = order[:, :k]
        top = np.take_along_axis(logits, chosen, 1)
        wts = np.exp(top - top.max(1, keepdims=True))
        wts /= wts.sum(1, keepdims=True)
        sorted_logits = np.take_along_axis(logits, order, 1)
        margins = sorted_logits[:, k - 1] - sorted_logits[:, k]
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            for j, e in enumerate(chosen[t]):
                g = np.minimum(x[t] @ m["gate"][e].T + m["gate_bias"][e], limit)
                u = np.clip(x[t] @ m["up"][e].T + m["up_bias"][e], -limit, limit)
                y = ((u + 1) * g / (1 + np.exp(-alpha * g))) @ m["down"][e].T + m["down_bias"][e]
                out[t] += wts[t, j] * y
        clamped = sum(int((np.abs(x @ m["gate"][e].T + m["gate_bias"][e]) > limit).sum()) for e in range(E))
        return out, [sorted(map(int, row)) for row in chosen], margins, clamped
    return layers, reference


def check_served(check, args, label, path, c, held, rng, f32_compute=False):
    """Served in-process and networked against the float64 reference; `f32_compute` for bf16
    experts, which moe-serve otherwise computes in bf16 (activations rounded to bf16)."""
    xs = [rng.normal(0, 1, (N_TOKENS, golden.H)).astype(np.float32) for _ in range(c["num_hidden_layers"])]
    refs = [golden.reference(c, held, layer, xs[layer].astype(np.float64)) for layer in range(c["num_hidden_layers"])]
    serve_and_compare(check, args.bin, path, label, xs, refs, args.tmp, golden.TIE, golden.TOL, f32_compute=f32_compute)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    # Our own folder: ctest runs the other golden tests beside us in the same test_tmp, and
    # run_client's x.npy/out.npy/routing.json must not be shared.
    args.tmp = os.path.join(args.tmp, "gguf_parity")
    os.makedirs(args.tmp, exist_ok=True)
    check = Checks()
    rng = np.random.default_rng(20261207)
    for label, arch, family, over, qtype, bias_range, split in CASES:
        c = golden.config_for(family, **over)
        if family.startswith("deepseek"):
            c["n_shared_experts"] = 1
        w = golden.make_weights(c, rng, bias_range)
        folder = os.path.join(args.tmp, "gguf-" + label.split()[0] + "-" + qtype.name)
        os.makedirs(folder, exist_ok=True)
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
        path = os.path.join(folder, "model.gguf")
        held = write_gguf(path, arch, c, w, qtype, rng, split, per_expert="per-expert" in label)
        if split:
            shards = sorted(os.listdir(folder))
            check(len(shards) > 1 and shards[0].endswith("-00001-of-%05d.gguf" % len(shards)),
                  f"{label}: gguf-py wrote the split set {shards}")
            path = os.path.join(folder, shards[0])
        check_served(check, args, label, path, c, held, rng, f32_compute=qtype == T.BF16)
    # gpt-oss: biases everywhere, the clamped activation, softmax after top-k.
    label = "gpt-oss MXFP4 (biases, clamped activation)"
    path = os.path.join(args.tmp, "gguf-gpt-oss.gguf")
    layers, reference = gptoss_case(path, rng)
    xs = [rng.normal(0, 1, (N_TOKENS, golden.H)).astype(np.float32) for _ in range(layers)]
    refs = [reference(layer, xs[layer].astype(np.float64)) for layer in range(layers)]
    check(all(r[3] > 0 for r in refs), f"{label}: gate values past the clamp in every layer ({[r[3] for r in refs]})")
    serve_and_compare(check, args.bin, path, label, xs, refs, args.tmp, golden.TIE, golden.TOL)
    for family, qtype in (("qwen3_moe", "q4_k"), ("deepseek_v3", "q6_k")):
        label = f"moe-make-checkpoint --format=gguf --family={family} --quant={qtype}"
        path = os.path.join(args.tmp, f"made-{family}-{qtype}.gguf")
        subprocess.run([f"{args.bin}/moe-make-checkpoint", "--format=gguf", f"--family={family}", f"--quant={qtype}",
                        f"--out={path}", f"--hidden_size={golden.H}", f"--intermediate_size={golden.MOE_I}",
                        f"--num_experts={golden.E}", "--top_k=2", "--num_layers=3", "--seed=5"],
                       check=True, stdout=subprocess.DEVNULL)
        reader = gguf.GGUFReader(path)
        c = config_from_gguf(reader)
        types = {x.name: x.tensor_type.name for x in reader.tensors}
        want = qtype.upper()
        experts_typed = all(v == want for n, v in types.items() if "_exps" in n or "_shexp" in n)
        check(experts_typed and types["blk.2.ffn_gate_inp.weight"] == "F32",
              f"{label}: gguf-py reads {len(types)} tensors, experts {want}, gates F32")
        check_served(check, args, label, path, c, weights_from_gguf(reader, c), rng)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
