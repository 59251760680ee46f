"""compressed-tensors checkpoints served exactly: int4 packed, int8 and FP8 weights kept as stored.

For each case this makes a small MoE model (golden_parity_test's families and NumPy reference) and
quantizes every MLP linear layer (experts, shared experts, dense MLPs; the router's gate is in
`ignore`) with the `compressed-tensors` package from PyPI itself — `calculate_qparams` for the
scales and zero points, the format's own compressor (`PackedQuantizationCompressor`,
`IntQuantizationCompressor`, `FloatQuantizationCompressor`) for the bytes — and writes the
checkpoint with the library's `QuantizationConfig` as its quantization_config. The schemes are the
ones llm-compressor ships: W4A16 (int4, groups of 128, symmetric and asymmetric), W8A16 (int8
packed four to a word, per channel), W8A8-INT8 (int8 per channel), FP8_DYNAMIC (fp8 per channel)
and FP8_BLOCK (fp8, 128 × 128 blocks). Scales are bf16, as a bf16 model's are.

The reference weights are what the library's own unpacking gives (`unpack_from_int32`, the stored
codes) times the stored scales, in f32 — and the library's `decompress` agrees with them to the
rounding of its bf16 output (checked). A worker hosting every expert reports (GetWorkerInfo) at
most 1.02 × the bytes the checkpoint stores for them. Served in-process and networked: every layer's output within
1e-5 of the float64 reference (golden_parity_test's, which hf_parity_test holds to Hugging Face's
blocks) with identical experts for tokens without a near-tie. Run by ctest with the torch venv
(scripts/setup.sh moe_torch_env: torch and compressed-tensors from PyPI).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import torch
from compressed_tensors.compressors import (FloatQuantizationCompressor, IntQuantizationCompressor,
                                            PackedQuantizationCompressor)
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_parity_test as golden  # noqa: E402
from moe_processes import Checks, serve_and_compare  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python"))
import grpc  # noqa: E402
from moe_serve._proto import moe_pb2, moe_pb2_grpc  # noqa: E402

golden.H, golden.MOE_I, golden.DENSE_I = 256, 256, 384
N_TOKENS = 23

# (label, family, config overrides, format, weight args)
CASES = [
    ("qwen3_moe W4A16", "qwen3_moe", {"norm_topk_prob": True, "mlp_only_layers": [0]}, "pack-quantized",
     dict(num_bits=4, type="int", symmetric=True, strategy="group", group_size=128)),
    ("mixtral W4A16 asymmetric", "mixtral", {}, "pack-quantized",
     dict(num_bits=4, type="int", symmetric=False, strategy="group", group_size=128)),
    ("mixtral W8A16", "mixtral", {}, "pack-quantized",
     dict(num_bits=8, type="int", symmetric=True, strategy="channel")),
    ("qwen3_moe W8A8-INT8", "qwen3_moe", {"norm_topk_prob": True}, "int-quantized",
     dict(num_bits=8, type="int", symmetric=True, strategy="channel")),
    ("deepseek_v3 FP8_DYNAMIC (dense layer, shared experts)", "deepseek_v3", {}, "float-quantized",
     dict(num_bits=8, type="float", symmetric=True, strategy="channel")),
    ("qwen3_moe FP8_BLOCK", "qwen3_moe", {"norm_topk_prob": True}, "float-quantized",
     dict(num_bits=8, type="float", symmetric=True, strategy="block", block_structure=[128, 128])),
]
COMPRESSOR = {"pack-quantized": PackedQuantizationCompressor, "int-quantized": IntQuantizationCompressor,
              "float-quantized": FloatQuantizationCompressor}
# W8A8 schemes quantize activations too (dynamic, per token); moe-serve keeps them in f32/bf16.
ACTIVATIONS = {"int-quantized": dict(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True),
               "float-quantized": dict(num_bits=8, type="float", symmetric=True, strategy="token", dynamic=True)}


def ranges(w, args):
    """Per-scale min and max of w [out, in] as the strategy groups it."""
    out, inn = w.shape
    if args.strategy == "group":
        g = w.reshape(out, inn // args.group_size, args.group_size)
        return g.amin(2), g.amax(2)
    if args.strategy == "channel":
        return w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    bn, bk = args.block_structure
    b = w.reshape(out // bn, bn, inn // bk, bk)
    return b.amin((1, 3)), b.amax((1, 3))


def expand(scale, out, inn):
    """A scale tensor [rows, cols] spread over W [out, in] (each entry over its block)."""
    s = scale.float().reshape(scale.shape[0], -1)
    rb, cb = -(-out // s.shape[0]), -(-inn // s.shape[1])
    return s.repeat_interleave(rb, 0)[:out].repeat_interleave(cb, 1)[:, :inn]


def compress(w, fmt, args, scheme):
    """The library's tensors for one linear layer, and the f32 values they define."""
    weight = torch.from_numpy(w).to(torch.bfloat16)
    out, inn = weight.shape
    scale, zero = calculate_qparams(*ranges(weight, args), args)
    state = {"weight": weight, "weight_scale": scale, "weight_zero_point": zero}
    stored = COMPRESSOR[fmt].compress(state, scheme)
    if "weight_packed" in stored:
        codes = unpack_from_int32(stored["weight_packed"], args.num_bits, torch.Size([out, inn])).float()
        if "weight_zero_point" in stored:
            zp = unpack_from_int32(stored["weight_zero_point"], args.num_bits,
                                   torch.Size([out, scale.shape[1]]), packed_dim=0)
            codes = codes - expand(zp, out, inn)
    else:
        codes = stored["weight"].float()
    values = (codes * expand(stored["weight_scale"], out, inn)).float()
    library = COMPRESSOR[fmt].decompress(stored, scheme)["weight"].float()
    return {k: v.contiguous() for k, v in stored.items()}, values.numpy(), (library - values).abs().max().item(), \
        values.abs().max().item()


def write(ckpt, c, w, fmt, weight_args):
    args = QuantizationArgs(**weight_args)
    acts = QuantizationArgs(**ACTIVATIONS[fmt]) if fmt in ACTIVATIONS else None
    scheme = QuantizationScheme(targets=["Linear"], weights=args, input_activations=acts)
    tensors, held, worst = {}, {}, 0.0
    for name, v in w.items():
        if name.endswith(".weight") and v.ndim == 2 and ".gate.weight" not in name and "shared_expert_gate" not in name:
            base = name[:-len(".weight")]
            stored, values, diff, largest = compress(v, fmt, args, scheme)
            for k, x in stored.items():
                tensors[f"{base}.{k}"] = x
            held[name] = values
            worst = max(worst, diff / largest)
        else:
            tensors[name] = torch.from_numpy(v)
            held[name] = v
    save_file(tensors, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
    qc = QuantizationConfig(config_groups={"group_0": scheme}, format=fmt, quantization_status="compressed",
                            ignore=["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$"]).to_dict()
    json.dump(dict(c, quantization_config=qc), open(os.path.join(ckpt, "config.json"), "w"), indent=2)
    return held, worst


def resident_vs_stored(bin_dir, ckpt):
    """A worker hosting every routed expert: its GetWorkerInfo resident bytes and dtype, and the
    bytes the checkpoint stores for those experts (every tensor of `.experts.E.`)."""
    with safe_open(os.path.join(ckpt, "model.safetensors"), "pt") as f:
        stored = sum(f.get_tensor(n).nbytes for n in f.keys() if re.search(r"\.experts\.\d+\.", n))
    # --ready_fd: the worker writes "<port> <metrics port>" there once SERVING (its startup line
    # comes just before its backend is attached).
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen([f"{bin_dir}/moe-expert", f"--checkpoint={ckpt}", "--listen=127.0.0.1:0",
                             "--metrics_port=-1", "--threads=1", f"--ready_fd={ready_w}"], pass_fds=(ready_w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(ready_w)
    try:
        with os.fdopen(ready_r) as ready:
            line = ready.readline()  # empty if the worker exits first
        if not line:
            raise RuntimeError(f"moe-expert did not start on {ckpt} (exit {proc.wait()})")
        port = int(line.split()[0])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = moe_pb2_grpc.ExpertServiceStub(channel).GetWorkerInfo(moe_pb2.GetWorkerInfoRequest(), timeout=60)
        return info.resident_bytes, info.resident_dtype, stored
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    # Our own folder: ctest runs the other golden tests beside us in the same test_tmp.
    args.tmp = os.path.join(args.tmp, "compressed_tensors_parity")
    os.makedirs(args.tmp, exist_ok=True)
    check = Checks()
    rng = np.random.default_rng(20261208)
    for label, family, over, fmt, weight_args in CASES:
        c = golden.config_for(family, **over)
        if family.startswith("deepseek"):
            c["n_shared_experts"] = 1
        w = golden.make_weights(c, rng, (-0.3, 0.3))
        ckpt = os.path.join(args.tmp, label.split(" (")[0].replace(" ", "-"))
        os.makedirs(ckpt, exist_ok=True)
        held, worst = write(ckpt, c, w, fmt, weight_args)
        packed = sum(1 for n in held if held[n] is not w[n])
        # The library's decompress returns bf16: its values round ours (2^-8 relative at most).
        check(packed > 0 and worst <= 2.0 ** -8,
              f"{label}: {packed} linear layers as {fmt}; the library's decompress within {worst:.1e} of our reference")
        resident, dtype, stored_bytes = resident_vs_stored(args.bin, ckpt)
        check(resident <= 1.02 * stored_bytes,
              f"{label}: a worker holds its experts as {dtype}, resident {resident} B ÷ stored {stored_bytes} B = "
              f"{resident / stored_bytes:.4f}")
        xs = [rng.normal(0, 1, (N_TOKENS, golden.H)).astype(np.float32) for _ in range(c["num_hidden_layers"])]
        refs = [golden.reference(c, held, layer, xs[layer].astype(np.float64)) for layer in range(c["num_hidden_layers"])]
        serve_and_compare(check, args.bin, ckpt, label, xs, refs, args.tmp, golden.TIE, golden.TOL)
    # What is not served is refused at start, by name.
    base = os.path.join(args.tmp, "qwen3_moe-W4A16")
    for what, edit in (("group_size 32", lambda q: q["config_groups"]["group_0"]["weights"].update(group_size=32)),
                       ("actorder 'group'", lambda q: q["config_groups"]["group_0"]["weights"].update(actorder="group")),
                       ("nvfp4-pack-quantized", lambda q: q.update(format="nvfp4-pack-quantized"))):
        cfg = json.load(open(os.path.join(base, "config.json")))
        edit(cfg["quantization_config"])
        bad = base + "-" + what.split()[0].strip("'")
        os.makedirs(bad, exist_ok=True)
        json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
        if not os.path.exists(os.path.join(bad, "model.safetensors")):
            os.symlink(os.path.join(base, "model.safetensors"), os.path.join(bad, "model.safetensors"))
        r = subprocess.run([f"{args.bin}/moe-router", f"--checkpoint={bad}", "--local", "--listen=127.0.0.1:0"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and what in r.stderr, f"{what} refused: {r.stderr.strip()[-160:]}")
    # A malformed tensor is refused naming it, never read past its bytes: a weight_packed of int8
    # bytes shaped like W8A16's [out, in/4] words.
    bad = base + "-bad-dtype"
    os.makedirs(bad, exist_ok=True)
    with safe_open(os.path.join(base, "model.safetensors"), "pt") as f:
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    name = next(n for n in tensors if n.endswith(".weight_packed"))
    out, words = tensors[name].shape
    tensors[name] = torch.zeros((out, words * 2), dtype=torch.int8)
    save_file(tensors, os.path.join(bad, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(base, "config.json"), os.path.join(bad, "config.json"))
    r = subprocess.run([f"{args.bin}/moe-router", f"--checkpoint={bad}", "--local", "--listen=127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and name in r.stderr and "expected I32" in r.stderr,
          f"a weight_packed of the wrong dtype refused: {r.stderr.strip()[-160:]}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
