"""AWQ and GPTQ checkpoints served exactly: 4-bit experts (and shared/dense MLPs) kept as stored.

For each case this makes a small MoE model (golden_parity_test's families and NumPy reference),
quantizes every MLP linear layer to 4 bits with a scale and zero point per group of 128 inputs,
packs it as the method's checkpoints do — AutoAWQ's GEMM layout (qweight int32 [in, out/8], the
eight fields of a word holding output columns 0, 2, 4, 6, 1, 3, 5, 7), GPTQ's (qweight int32
[in/8, out], fields in input order; qzeros stored minus one in "gptq", as is in "gptq_v2"; g_idx)
— and writes the checkpoint with the `safetensors` package and a quantization_config. The
reference weights are the values those bytes define, (q − z)·s in f32 with the f16 scale (for
GPTQ's v1 zeros: the stored field plus one, as its kernels compute). The router's gates stay f32
(modules_to_not_convert). Served in-process and networked: every layer's output within 1e-5 of the
float64 reference with identical experts for tokens without a near-tie. A checkpoint with
act-order (desc_act) is refused by name. Run by ctest in build/venv (numpy, safetensors).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_parity_test as golden  # noqa: E402
from moe_processes import Checks, serve_and_compare  # noqa: E402

golden.H, golden.MOE_I, golden.DENSE_I = 256, 256, 384
G = 128
N_TOKENS = 23
AWQ_FIELD = [0, 4, 1, 5, 2, 6, 3, 7]  # output column c of each eight lives in field AWQ_FIELD[c]

CASES = [
    ("qwen3_moe awq", "qwen3_moe", {"norm_topk_prob": True, "mlp_only_layers": [0]}, "awq"),
    ("mixtral gptq", "mixtral", {}, "gptq"),
    ("deepseek_v3 gptq_v2 (dense layer, shared experts)", "deepseek_v3", {}, "gptq_v2"),
]


def quantize(w):
    """w [out, in] → (q [out, in] uint8, z [groups, out] int, s [groups, out] f16): asymmetric 4-bit
    per group of 128 inputs."""
    out, inn = w.shape
    g = w.reshape(out, inn // G, G)
    lo, hi = np.minimum(g.min(2), 0), np.maximum(g.max(2), 0)
    s = ((hi - lo) / 15).astype(np.float16)
    sf = np.maximum(s.astype(np.float32), 1e-8)
    z = np.clip(np.round(-lo / sf), 0, 15).astype(np.int64)
    q = np.clip(np.round(g / sf[:, :, None]) + z[:, :, None], 0, 15).astype(np.uint8).reshape(out, inn)
    return q, z.T, s.T  # z, s as [groups, out]


def pack_fields(values, axis_fields):
    """Packs 4-bit `values` along their last axis, eight to an int32, field f from bit 4f holding
    element axis_fields[f] of each eight."""
    v = values.astype(np.uint32).reshape(*values.shape[:-1], -1, 8)
    words = np.zeros(v.shape[:-1], dtype=np.uint32)
    for f, e in enumerate(axis_fields):
        words |= v[..., e] << np.uint32(4 * f)
    return words.view(np.int32)


def pack(method, w):
    """The tensors of one linear layer, and the f32 values they define."""
    q, z, s = quantize(w)
    out, inn = w.shape
    groups = inn // G
    if method == "awq":
        order = [AWQ_FIELD.index(f) for f in range(8)]  # field f holds column order[f]
        t = {"qweight": pack_fields(q.T, order), "qzeros": pack_fields(z, order), "scales": s}
        zero = z
    else:
        stored = (z - 1) & 15 if method == "gptq" else z
        zero = stored + 1 if method == "gptq" else stored
        t = {"qweight": pack_fields(q.T.reshape(inn // 8, 8, out).transpose(0, 2, 1), list(range(8))).reshape(inn // 8, out),
             "qzeros": pack_fields(stored, list(range(8))), "scales": s,
             "g_idx": (np.arange(inn) // G).astype(np.int32)}
    values = (q.reshape(out, groups, G).astype(np.float32) - zero.T[:, :, None].astype(np.float32)) \
        * s.T[:, :, None].astype(np.float32)
    return t, values.reshape(out, inn)


def write(ckpt, c, w, method):
    tensors, held = {}, {}
    for name, v in w.items():
        if name.endswith(".weight") and v.ndim == 2 and v.shape[1] % G == 0 and ".gate.weight" not in name \
                and "shared_expert_gate" not in name:
            base = name[:-len(".weight")]
            t, values = pack(method, v)
            for k, x in t.items():
                tensors[f"{base}.{k}"] = x
            held[name] = values
        else:
            tensors[name] = v
            held[name] = v
    save_file(tensors, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
    qc = {"quant_method": "awq" if method == "awq" else "gptq", "bits": 4, "group_size": G,
          "modules_to_not_convert": ["gate"]}
    if method == "awq":
        qc.update(zero_point=True, version="gemm")
    else:
        qc.update(desc_act=False, sym=False, checkpoint_format=method)
    json.dump(dict(c, quantization_config=qc), open(os.path.join(ckpt, "config.json"), "w"), indent=2)
    return held


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    # Our own folder: ctest runs the other golden tests beside us in the same test_tmp, and
    # run_client's x.npy/out.npy/routing.json must not be shared.
    args.tmp = os.path.join(args.tmp, "int4_parity")
    os.makedirs(args.tmp, exist_ok=True)
    check = Checks()
    rng = np.random.default_rng(20261207)
    for label, family, over, method in CASES:
        c = golden.config_for(family, **over)
        if family.startswith("deepseek"):
            c["n_shared_experts"] = 1
        w = golden.make_weights(c, rng, (-0.3, 0.3))
        ckpt = os.path.join(args.tmp, "int4-" + label.split()[0] + "-" + method)
        os.makedirs(ckpt, exist_ok=True)
        held = write(ckpt, c, w, method)
        packed = sum(1 for n in held if n not in w or held[n] is not w[n])
        check(packed > 0, f"{label}: {packed} linear layers packed as {method}")
        xs = [rng.normal(0, 1, (N_TOKENS, golden.H)).astype(np.float32) for _ in range(c["num_hidden_layers"])]
        refs = [golden.reference(c, held, layer, xs[layer].astype(np.float64)) for layer in range(c["num_hidden_layers"])]
        serve_and_compare(check, args.bin, ckpt, label, xs, refs, args.tmp, golden.TIE, golden.TOL)
    # Act-order GPTQ is refused by name, at start.
    ckpt = os.path.join(args.tmp, "int4-mixtral-gptq")
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    cfg["quantization_config"]["desc_act"] = True
    bad = ckpt + "-desc-act"
    os.makedirs(bad, exist_ok=True)
    json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
    if not os.path.exists(os.path.join(bad, "model.safetensors")):
        os.symlink(os.path.join(ckpt, "model.safetensors"), os.path.join(bad, "model.safetensors"))
    r = subprocess.run([f"{args.bin}/moe-router", f"--checkpoint={bad}", "--local", "--listen=127.0.0.1:0"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode != 0 and "desc_act" in r.stderr, f"gptq with desc_act refused: {r.stderr.strip()[:160]}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
