"""A GGUF file served by moe-serve against Hugging Face transformers loading the same file.

transformers reads GGUF models itself (`from_pretrained(folder, gguf_file=...)`, dequantizing
the blocks with the `gguf` package); for the MoE architectures it supports (qwen2moe, qwen3moe)
that model is the reference nobody here wrote. For each case this builds a tiny random
transformers model, writes it as llama.cpp lays a GGUF out — every tensor under gguf-py's own
HF→GGUF name map, the experts stacked per layer as `ffn_{gate,up,down}_exps` and quantized by
gguf-py's quantizers (Q8_0, Q4_0); gates, norms, attention and embeddings F32 — then:
- loads the model back with `AutoModelForCausalLM.from_pretrained(..., gguf_file=...)` (the sizes
  transformers takes from GGUF metadata, and its defaults for what it does not read: Qwen3-MoE's
  moe_intermediate_size 768, Qwen2-MoE's 1408 and shared 5632, so the tiny models use those);
- serves the same file with moe-cluster (its experts kept in their GGUF blocks, f32 compute),
  in-process and networked, and compares every layer's MoE block with HF's on fresh hidden states
  (rel ≤ 1e-5, the same experts for every token);
- runs greedy `generate()` of HF's model and of the same model after `moe_serve.hf.offload`
  (identical tokens, logits within 1e-5); `moe_serve.hf.from_pretrained(..., gguf_file=...)` is
  refused with the reason.
Run by ctest with the torch venv (torch, transformers, gguf from PyPI).
"""
import argparse
import importlib.metadata
import os
import shutil
import sys

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_parity_test as hp  # noqa: E402  (its HF reference, router spread and generate check)
from moe_processes import Checks, Cluster, run_client  # noqa: E402

ARCH = {"qwen3_moe": gguf.MODEL_ARCH.QWEN3MOE, "qwen2_moe": gguf.MODEL_ARCH.QWEN2MOE}
GGUF_ARCH = {"qwen3_moe": "qwen3moe", "qwen2_moe": "qwen2moe"}
# (label, model_type, config fields: the sizes transformers' GGUF loader assumes, expert type)
CASES = [
    ("qwen3_moe Q8_0", "qwen3_moe", dict(num_experts=hp.E, num_experts_per_tok=hp.K, moe_intermediate_size=768,
                                         intermediate_size=hp.DENSE_I, norm_topk_prob=True),
     gguf.GGMLQuantizationType.Q8_0),
    ("qwen3_moe Q4_0", "qwen3_moe", dict(num_experts=hp.E, num_experts_per_tok=hp.K, moe_intermediate_size=768,
                                         intermediate_size=hp.DENSE_I, norm_topk_prob=True),
     gguf.GGMLQuantizationType.Q4_0),
    ("qwen2_moe Q8_0 (shared expert)", "qwen2_moe",
     dict(num_experts=hp.E, num_experts_per_tok=hp.K, moe_intermediate_size=1408, intermediate_size=hp.DENSE_I,
          shared_expert_intermediate_size=5632, norm_topk_prob=False), gguf.GGMLQuantizationType.Q8_0),
]


def write_gguf(path, model_type, model, config, qtype):
    """The model as a GGUF file, llama.cpp's way; returns the number of quantized tensors."""
    names = gguf.get_tensor_name_map(ARCH[model_type], config.num_hidden_layers)
    w = gguf.GGUFWriter(path, GGUF_ARCH[model_type])
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_freq_base(config.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_expert_count(config.num_experts)
    w.add_expert_used_count(config.num_experts_per_tok)
    w.add_expert_feed_forward_length(config.moe_intermediate_size)
    if model_type == "qwen2_moe":
        w.add_expert_shared_feed_forward_length(config.shared_expert_intermediate_size)
    quantized = 0

    def add(name, value, quantize=False):
        nonlocal quantized
        value = np.ascontiguousarray(value.detach().float().numpy())
        if quantize:
            w.add_tensor(name, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
            quantized += 1
        else:
            w.add_tensor(name, value)

    for hf_name, p in model.state_dict().items():
        base, _, suffix = hf_name.rpartition(".")
        if base.endswith("mlp.experts") and hf_name.endswith("gate_up_proj"):
            layer = int(hf_name.split(".")[2])
            inter = p.shape[1] // 2
            add(f"blk.{layer}.ffn_gate_exps.weight", p[:, :inter], True)
            add(f"blk.{layer}.ffn_up_exps.weight", p[:, inter:], True)
            continue
        if base.endswith("mlp.experts"):  # down_proj [E, H, I]
            add(names.get_name(hf_name) + ".weight", p, True)
            continue
        gguf_name = names.get_name(base)
        if gguf_name is None:
            raise RuntimeError(f"no GGUF name for {hf_name}")
        if gguf_name.endswith("ffn_gate_inp_shexp"):
            p = p.reshape(-1)  # llama.cpp writes the shared expert's gate [1, H] as a vector
        add(f"{gguf_name}.{suffix}", p, ".shared_expert." in hf_name and suffix == "weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return quantized


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    args.tmp = os.path.join(args.tmp, "hf_gguf")  # our own folder beside the other golden tests
    os.makedirs(args.tmp, exist_ok=True)
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    print(f"hf_gguf: torch {torch.__version__}, transformers {transformers.__version__}, gguf "
          f"{importlib.metadata.version('gguf')}", flush=True)
    check = Checks()
    rng = np.random.default_rng(20261207)
    for label, model_type, fields, qtype in CASES:
        torch.manual_seed(11)
        config = AutoConfig.for_model(model_type, **{**hp.SMALL, **fields})
        built = AutoModelForCausalLM.from_config(config).float().eval()
        hp.spread_router(built, rng)
        folder = os.path.join(args.tmp, label.split(" (")[0].replace(" ", "-"))
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        path = os.path.join(folder, "model.gguf")
        quantized = write_gguf(path, model_type, built, config, qtype)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf", dtype=torch.float32).eval()
        loaded = model.config.model_type == model_type and model.config.num_experts == hp.E
        check(quantized > 0 and loaded,
              f"{label}: {quantized} tensors as {qtype.name}; transformers loaded it as {model.config.model_type}, "
              f"{model.config.num_experts} experts of {model.config.moe_intermediate_size}")
        xs = [rng.normal(0, 1, (hp.N_TOKENS, hp.H)).astype(np.float32) for _ in range(hp.LAYERS)]
        refs = [hp.hf_reference(model, layer, xs[layer]) for layer in range(hp.LAYERS)]
        for mode, workers in (("in-process", 0), ("networked", 2)):
            cluster = Cluster(args.bin, path, workers, f32_compute=True, quiet=True)
            try:
                for layer in range(hp.LAYERS):
                    got, routing = run_client(args.bin, cluster.router, layer, xs[layer], args.tmp)
                    ref_out, ref_experts, _ = refs[layer]
                    err = np.abs(got - ref_out).max() / np.abs(ref_out).max()
                    ours = [sorted(r["experts"]) for r in routing]
                    differ = sum(a != b for a, b in zip(ours, ref_experts))
                    check(differ == 0 and err <= hp.TOL,
                          f"{label}, {mode}, layer {layer}: experts {'identical' if differ == 0 else 'DIFFER'} "
                          f"for {hp.N_TOKENS - differ}/{hp.N_TOKENS} tokens, rel err {err:.2e}")
                if mode == "in-process":
                    hp.generate_check(model, cluster, check, label, None)
                    try:
                        hp.moe_serve.hf.from_pretrained(folder, cluster.router, gguf_file="model.gguf")
                        check(False, f"{label}: moe_serve.hf.from_pretrained(gguf_file=) refused")
                    except ValueError as e:
                        check("does not read GGUF" in str(e), f"{label}: from_pretrained(gguf_file=) refused: {e}")
            finally:
                cluster.stop()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
