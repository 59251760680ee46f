"""The Mixtral block of routing.md in float64 with numpy alone, on an f32 checkpoint whose
safetensors files are parsed by hand: the reference of the Python client tests (Debian's grpcio
with generated stubs, and the moe_serve package)."""
import json
import os

import numpy as np


def load_tensors(folder):
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    tensors = {}
    for f in files:
        raw = open(os.path.join(folder, f), "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        data = raw[8 + n:]
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            assert meta["dtype"] == "F32", "this check expects an f32 checkpoint"
            b, e = meta["data_offsets"]
            tensors[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return tensors


def chosen_experts(t, layer, x, top_k):
    """Per token, its top-k experts best first (ties to the lower id)."""
    p = f"model.layers.{layer}.block_sparse_moe."
    logits = x @ t[p + "gate.weight"].T
    return [sorted(range(logits.shape[1]), key=lambda e: (-logits[i, e], e))[:top_k] for i in range(x.shape[0])]


def mixtral_block(t, layer, x, top_k):
    p = f"model.layers.{layer}.block_sparse_moe."
    logits = x @ t[p + "gate.weight"].T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        chosen = sorted(range(probs.shape[1]), key=lambda e: (-probs[i, e], e))[:top_k]
        norm = sum(probs[i, e] for e in chosen)
        for e in chosen:
            w1, w3, w2 = (t[f"{p}experts.{e}.{w}.weight"] for w in ("w1", "w3", "w2"))
            g, u = w1 @ x[i], w3 @ x[i]
            out[i] += probs[i, e] / norm * (w2 @ (g / (1 + np.exp(-g)) * u))
    return out
