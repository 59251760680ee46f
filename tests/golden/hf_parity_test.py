"""Golden parity of every served family against Hugging Face transformers itself.

For each family this builds a tiny random model with transformers (PyPI, pinned in scripts/setup.sh
and run from its cached venv), spreads the router weights and selection biases so that top-k is
well separated, writes it with `save_pretrained` in several shards, serves it with moe-serve
in-process (a --local router) and over the network (router + 3 workers), and compares, for every
decoder layer, moe-serve's answer with the HF module's own output (`layer.mlp`,
`layer.block_sparse_moe` or `layer.feed_forward`) on fresh random hidden states: f32 relative
error <= 1e-5 and the same experts for every token (HF's choice read by a hook on its experts
module). Dense layers compare the dense MLP the same way. Run by ctest with the venv's python
(`scripts/test.sh` passes it as MOE_TORCH_PYTHON).
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from moe_processes import Checks, Cluster, run_client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python"))
import moe_serve  # noqa: E402  (client/python, the source tree; grpcio + protobuf in the torch venv)
import moe_serve.hf  # noqa: E402

H, E, K, MOE_I, DENSE_I, LAYERS, N_TOKENS = 32, 8, 2, 24, 40, 3, 41
TOL = 1e-5
BF16_CHECKED = ("mixtral", "qwen2_moe", "deepseek_v3", "gpt_oss", "llama4_text")
SMALL = dict(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
             vocab_size=64, hidden_act="silu", tie_word_embeddings=False)
DEEPSEEK_ATTENTION = dict(q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                          head_dim=8)  # HF sets head_dim = qk_rope_head_dim
V3_ROUTER = dict(n_routed_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I, intermediate_size=DENSE_I,
                 n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2, norm_topk_prob=True,
                 routed_scaling_factor=2.5)



def v3(**over):
    """DeepSeek-V3's MLA attention and router fields, with `over` on top."""
    return {**DEEPSEEK_ATTENTION, **V3_ROUTER, **over}


DENSE_SPARSE = ["dense", "sparse", "sparse"]

# (label, model_type, config fields). Every family moe-serve serves that transformers has.
CASES = [
    ("mixtral", "mixtral", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I)),
    ("qwen2_moe", "qwen2_moe", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                    intermediate_size=DENSE_I, shared_expert_intermediate_size=36,
                                    norm_topk_prob=False, mlp_only_layers=[0])),
    ("qwen3_moe", "qwen3_moe", dict(num_local_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                    intermediate_size=DENSE_I, norm_topk_prob=True, mlp_only_layers=[0])),
    ("qwen3_next", "qwen3_next", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                      intermediate_size=DENSE_I, shared_expert_intermediate_size=36,
                                      norm_topk_prob=True, mlp_only_layers=[0], linear_num_key_heads=2,
                                      linear_num_value_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
                                      full_attention_interval=2)),
    ("olmoe", "olmoe", dict(num_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I, norm_topk_prob=False)),
    ("flex_olmo", "flex_olmo", dict(num_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I, norm_topk_prob=False,
                                    pad_token_id=1, bos_token_id=None, eos_token_id=2)),
    ("deepseek_v2", "deepseek_v2", dict(DEEPSEEK_ATTENTION, n_routed_experts=E, num_experts_per_tok=K,
                                        moe_intermediate_size=MOE_I, intermediate_size=DENSE_I, n_shared_experts=2,
                                        first_k_dense_replace=1, topk_method="greedy", norm_topk_prob=False,
                                        routed_scaling_factor=16.0)),
    ("deepseek_v3", "deepseek_v3", dict(DEEPSEEK_ATTENTION, **V3_ROUTER)),
    ("deepseek_v32", "deepseek_v32", dict(DEEPSEEK_ATTENTION, **V3_ROUTER, q_lora_rank=16,
                                          mlp_layer_types=["dense", "sparse", "sparse"], index_n_heads=2, num_key_value_heads=2,
                                          index_head_dim=16, index_topk=4)),
    ("glm4_moe", "glm4_moe", dict(V3_ROUTER, routed_scaling_factor=1.5)),
    # 2026 families whose MoE blocks are DeepSeek-V3's (read as deepseek_v3) or Qwen3-MoE's.
    ("sarvam_mla", "sarvam_mla", v3()),
    ("glm4_moe_lite", "glm4_moe_lite", v3(q_lora_rank=16, mlp_layer_types=DENSE_SPARSE, routed_scaling_factor=1.8)),
    ("glm_moe_dsa", "glm_moe_dsa", v3(q_lora_rank=16, mlp_layer_types=DENSE_SPARSE, index_n_heads=2, num_key_value_heads=2,
                                      index_head_dim=16, index_topk=4)),
    ("mimo_v2_flash", "mimo_v2_flash", {**V3_ROUTER, "n_shared_experts": 0, "mlp_layer_types": DENSE_SPARSE,
                                        "routed_scaling_factor": 1.0}),
    ("axk2", "axk2", v3(q_lora_rank=16, n_group=None, topk_group=None, mlp_layer_types=DENSE_SPARSE, num_key_value_heads=2)),
    ("solar_open", "solar_open", {k: v for k, v in V3_ROUTER.items() if k != "first_k_dense_replace"}),
    ("exaone_moe", "exaone_moe", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                      intermediate_size=DENSE_I, num_shared_experts=1, first_k_dense_replace=1,
                                      mlp_layer_types=DENSE_SPARSE, n_group=4, topk_group=2, routed_scaling_factor=2.5)),
    ("hy_v3", "hy_v3", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I, intermediate_size=DENSE_I,
                            num_shared_experts=1, mlp_layer_types=DENSE_SPARSE, router_scaling_factor=2.826)),
    ("sarvam_moe", "sarvam_moe", dict(V3_ROUTER)),
    ("beam", "beam", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I, intermediate_size=DENSE_I,
                          mlp_layer_types=DENSE_SPARSE, n_group=4, topk_group=2, routed_scaling_factor=2.5)),
    ("granitemoe_swa", "granitemoe_swa", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                              shared_intermediate_size=36)),
    ("kimi_linear", "kimi_linear", dict(num_experts=E, num_experts_per_token=K, moe_intermediate_size=MOE_I,
                                        intermediate_size=DENSE_I, num_shared_experts=1, mlp_layer_types=DENSE_SPARSE,
                                        num_expert_group=4, topk_group=2, moe_renormalize=True,
                                        routed_scaling_factor=2.446, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                        layer_types=["linear_attention", "full_attention", "linear_attention"],
                                        num_key_value_heads=2)),
    ("mellum", "mellum", dict(num_local_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                              intermediate_size=DENSE_I, norm_topk_prob=True, mlp_layer_types=DENSE_SPARSE)),
    ("dots1", "dots1", dict(V3_ROUTER, norm_topk_prob=False, routed_scaling_factor=1.0)),
    # Flint: f32 sigmoid router without bias, ungated shared expert, stacked experts.
    ("flint", "flint", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                            intermediate_size=DENSE_I, shared_expert_intermediate_size=36, mlp_only_layers=[0])),
    # Lara-4-Mini: f32 softmax router, ungated shared expert, stacked experts, every layer MoE.
    ("lara_mini", "lara_mini", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                    shared_expert_intermediate_size=36, linear_num_key_heads=2,
                                    linear_num_value_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
                                    layer_types=["linear_attention", "full_attention", "linear_attention"])),
    # Aria's text decoder: top-k logits then softmax over k, transposed stacked fc1/fc2, 2 shared.
    ("aria_text", "aria_text", dict(moe_num_experts=E, moe_topk=K, intermediate_size=MOE_I, moe_num_shared_experts=2)),
    # Mistral Small 4: V3's block with a softmax router, no selection bias, stacked experts.
    ("mistral4", "mistral4", v3(routed_scaling_factor=1.5, head_dim=16)),  # its rope is head_dim x 0.5
    ("minimax_m2", "minimax_m2", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I)),
    ("hunyuan_v1_moe", "hunyuan_v1_moe", dict(num_experts=E, moe_topk=K, intermediate_size=MOE_I)),
    ("granitemoe", "granitemoe", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I)),
    ("granitemoeshared", "granitemoeshared", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                                  shared_intermediate_size=36)),
    ("granitemoehybrid", "granitemoehybrid", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                                  shared_intermediate_size=36,
                                                  layer_types=["mamba", "attention", "mamba"], mamba_n_heads=2,
                                                  mamba_d_head=16, mamba_d_state=8, mamba_n_groups=1, mamba_expand=1,
                                                  use_mamba_kernels=False, pad_token_id=0)),
    ("llama4_text", "llama4_text", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                        intermediate_size_mlp=DENSE_I, interleave_moe_layer_step=2)),
    ("ernie4_5_moe", "ernie4_5_moe", dict(moe_num_experts=E, moe_k=K, moe_intermediate_size=MOE_I,
                                          intermediate_size=DENSE_I, moe_num_shared_experts=1,
                                          moe_layer_start_index=1, moe_layer_interval=1)),
    ("phimoe", "phimoe", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                              router_jitter_noise=0.3)),
    ("gpt_oss", "gpt_oss", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
    ("minimax", "minimax", dict(num_local_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I,
                                layer_types=["full_attention", "full_attention", "full_attention"])),
    ("qwen3_5_moe_text", "qwen3_5_moe_text", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                                                  shared_expert_intermediate_size=36, linear_num_key_heads=2,
                                                  linear_num_value_heads=2, linear_key_head_dim=8,
                                                  linear_value_head_dim=8, full_attention_interval=2)),
    # The multimodal wrapper, as the hub ships Qwen3.5: text_config nested, weights under
    # model.language_model. (built as Qwen3_5MoeForConditionalGeneration with a one-block vision tower).
    ("qwen3_5_moe", "qwen3_5_moe", dict(
        text_config=dict(SMALL, num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                         shared_expert_intermediate_size=36, linear_num_key_heads=2, linear_num_value_heads=2,
                         linear_key_head_dim=8, linear_value_head_dim=8, full_attention_interval=2),
        vision_config=dict(depth=1, hidden_size=H, intermediate_size=H, num_heads=2, out_hidden_size=H, patch_size=4,
                           temporal_patch_size=1, spatial_merge_size=1))),
    ("glm4v_moe", "glm4v_moe", dict(
        text_config=dict(SMALL, **V3_ROUTER, rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                                  mrope_section=[2, 1, 1], partial_rotary_factor=0.5)),
        vision_config=dict(depth=1, hidden_size=H, intermediate_size=H, num_heads=2, out_hidden_size=H, patch_size=4,
                           temporal_patch_size=1, spatial_merge_size=1))),
    # Qwen3-VL-MoE: stacked experts, always renormalised; the hub's transposed layout is the
    # "qwen3_vl_moe hub" case below.
    ("qwen3_vl_moe", "qwen3_vl_moe", dict(
        text_config=dict(SMALL, num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                         intermediate_size=DENSE_I, mlp_only_layers=[0],
                         rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[4, 2, 2])),
        vision_config=dict(depth=1, hidden_size=H, intermediate_size=H, num_heads=2, out_hidden_size=H, patch_size=4,
                           temporal_patch_size=1, spatial_merge_size=1, num_position_embeddings=16,
                           deepstack_visual_indexes=[0]))),
    ("kimi_k25", "kimi_k25", dict(
        text_config=dict(SMALL, **v3()),
        vision_config=dict(num_hidden_layers=1, hidden_size=H, intermediate_size=H, num_attention_heads=2, patch_size=4))),
    ("afmoe", "afmoe", dict(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=MOE_I,
                            intermediate_size=DENSE_I, num_shared_experts=1, num_dense_layers=1, route_scale=1.5)),
    # DBRX: its own field names (d_model, n_layers, nested configs; rope_theta given because
    # transformers 5.24's DbrxAttention reads it from attn_config, clip_qkv because it clamps with
    # None otherwise); p = 2 for the p-norm (DBRX ships 1).
    ("dbrx", "dbrx", dict(d_model=H, n_layers=LAYERS, n_heads=2,
                          attn_config=dict(kv_n_heads=1, rope_theta=10000.0, clip_qkv=8.0),
                          ffn_config=dict(moe_num_experts=E, moe_top_k=K, ffn_hidden_size=MOE_I,
                                          moe_normalize_expert_weights=2.0))),
    # Ling 2.5 hybrid: transformers writes Ling's names (num_experts, num_experts_per_token,
    # num_shared_experts, num_expert_group, moe_renormalize) for these DeepSeek ones.
    ("bailing_hybrid", "bailing_hybrid", dict(DEEPSEEK_ATTENTION, num_local_experts=E, num_experts_per_tok=K,
                                              moe_intermediate_size=MOE_I, intermediate_size=DENSE_I,
                                              n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2,
                                              norm_topk_prob=True, routed_scaling_factor=2.5, layer_group_size=2,
                                              pad_token_id=0, eos_token_id=1)),
    # LongCat-Flash: 4 zero (identity) experts beside the 8 routed ones; its config counts decoder
    # layers in num_layers (num_hidden_layers is twice that, the attention sublayers).
    ("longcat_flash", "longcat_flash", dict(num_hidden_layers=2 * LAYERS, n_routed_experts=E, zero_expert_num=4,
                                            moe_topk=K, expert_ffn_hidden_size=MOE_I, ffn_hidden_size=DENSE_I,
                                            routed_scaling_factor=1.5, q_lora_rank=16, kv_lora_rank=16,
                                            qk_nope_head_dim=8, qk_rope_head_dim=8, head_dim=8, v_head_dim=16)),
    ("jamba", "jamba", dict(num_experts=E, num_experts_per_tok=K, intermediate_size=MOE_I, expert_layer_period=2,
                            expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=0, mamba_d_state=4,
                            mamba_expand=1, use_mamba_kernels=False)),
]


# Causal LMs that transformers 5.24's AutoModelForCausalLM does not map (mistral4 is listed under
# the image-text-to-text auto class only).
CAUSAL_LM_NOT_IN_AUTO = {"mistral4": "Mistral4ForCausalLM"}


def mlp_of(layer):
    for name in ("mlp", "block_sparse_moe", "feed_forward", "ffn"):
        if hasattr(layer, name):
            return getattr(layer, name)
    raise RuntimeError(f"no MLP block in {type(layer).__name__}")


def spread_router(model, rng):
    """Router weights with a spread that separates top-k; selection biases of both signs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gate.weight", "router.weight", "gate.wg.weight", "ffn.router.layer.weight",
                              "router.classifier.weight")) and p.dim() == 2 and p.shape[0] >= E:
                p.copy_(torch.from_numpy(rng.normal(0, 2.0 * H ** -0.5, tuple(p.shape)).astype(np.float32)))
            if name.endswith(("router.bias", "_proj_bias")):  # gpt-oss: router and expert biases
                p.copy_(torch.from_numpy(rng.normal(0, 0.3, tuple(p.shape)).astype(np.float32)))
            if name.endswith("experts.gate_up_proj") and "gpt_oss" in type(model).__module__:
                p.mul_(40.0)  # gate/up values past the clamp at ±7, so that it is exercised
        for name, b in list(model.named_buffers()) + list(model.named_parameters()):
            if name.endswith(("e_score_correction_bias", "mlp.expert_bias")):
                b.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, tuple(b.shape)).astype(np.float32)))


def hf_reference(model, layer, x):
    """The HF module's output, and the experts it chose per token (None for a dense layer)."""
    block = mlp_of(moe_serve.hf.decoder_layers(model)[layer])
    chosen = []
    hooks = []
    if hasattr(block, "experts"):
        def on_experts(module, args):
            if len(args) > 1:  # experts(hidden_states, top_k_index, top_k_weights)
                chosen.append(args[1].detach().clone())
        hooks.append(block.experts.register_forward_pre_hook(on_experts))
    if type(block).__name__.startswith("Llama4") and hasattr(block, "router"):  # experts see scaled inputs only
        hooks.append(block.router.register_forward_hook(
            lambda module, args, out: chosen.append(torch.topk(out[1], K, dim=-1).indices)))
    with torch.no_grad():
        out = block(torch.from_numpy(x)[None])
    for hook in hooks:
        hook.remove()
    out = out[0] if isinstance(out, tuple) else out
    shared = getattr(moe_serve.hf.decoder_layers(model)[layer], "shared_mlp", None)  # Granite adds it in the decoder layer
    if shared is not None:
        with torch.no_grad():
            out = out + shared(torch.from_numpy(x)[None])
    # (Zero experts, ids >= E in LongCat-Flash, are computed on the router and not reported.)
    experts = [sorted(int(e) for e in row if e < E) for row in chosen[0].reshape(N_TOKENS, -1)] if chosen else None
    zero_picks = int((chosen[0] >= E).sum()) if chosen else 0
    return out.reshape(N_TOKENS, H).double().numpy(), experts, zero_picks


FP8_BLOCK = [16, 16]  # tiny dims: 24 and 40 leave ragged edge blocks
FP8_PROJ = re.compile(r"\.mlp\.(experts\.\d+\.|shared_experts\.)?(gate|up|down)_proj\.weight$")


def quantize_fp8(ckpt, deq_dir):
    """Rewrites `ckpt` as DeepSeek ships FP8: every MLP projection F8_E4M3 with a per-block f32
    `_scale_inv` (amax / 448 per block), quantization_config in config.json; writes the same
    checkpoint with those weights dequantized by transformers' own _dequantize_fp8_weight (in f32:
    moe-serve keeps the codes and scales as stored and dequantizes them exactly) to `deq_dir`, for
    the HF reference model."""
    from safetensors.torch import load_file, save_file
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight
    shutil.copytree(ckpt, deq_dir)
    index = json.load(open(os.path.join(ckpt, "model.safetensors.index.json")))
    quantized = 0
    for shard in sorted(set(index["weight_map"].values())):
        tensors = load_file(os.path.join(ckpt, shard))
        fp8, deq = {}, {}
        for name, w in tensors.items():
            if not FP8_PROJ.search(name):
                fp8[name], deq[name] = w, w
                continue
            n, k = w.shape
            bn, bk = FP8_BLOCK
            scale = torch.zeros((n + bn - 1) // bn, (k + bk - 1) // bk)
            q = torch.empty_like(w)
            for i in range(scale.shape[0]):
                for j in range(scale.shape[1]):
                    block = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
                    scale[i, j] = block.abs().max().clamp(min=1e-12) / 448.0
                    q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = block / scale[i, j]
            fp8[name] = q.to(torch.float8_e4m3fn)
            fp8[name + "_scale_inv"] = scale
            index["weight_map"][name + "_scale_inv"] = shard
            deq[name] = _dequantize_fp8_weight(fp8[name], scale, FP8_BLOCK, torch.float32)
            quantized += 1
        save_file(fp8, os.path.join(ckpt, shard), metadata={"format": "pt"})
        save_file(deq, os.path.join(deq_dir, shard), metadata={"format": "pt"})
    json.dump(index, open(os.path.join(ckpt, "model.safetensors.index.json"), "w"))
    config = json.load(open(os.path.join(ckpt, "config.json")))
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": FP8_BLOCK}
    json.dump(config, open(os.path.join(ckpt, "config.json"), "w"), indent=2)
    return quantized


def generate_check(model, cluster, check, label, ckpt, **load):
    """Greedy generate() of the unmodified model vs the same model after moe_serve.hf.offload (every
    MLP block, dense ones too, served by moe-serve, on a ForwardStream) and vs the model built by
    moe_serve.hf.from_pretrained from the checkpoint without its served blocks: in f32 the tokens
    must be identical and the logits within TOL; for a few families the same in bf16 (unary
    Forwards), with the error it has reported."""
    ids = torch.tensor([[1, 7, 3, 12, 5]])
    with torch.no_grad():
        want = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        want_logits = model(ids).logits
        with moe_serve.Client(cluster.router, timeout=60) as client:
            offloaded = moe_serve.hf.offload(model, client, dense=True, keep_originals=True)
            served = len(offloaded.layers)
            try:
                got = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
                got_logits = model(ids).logits
            finally:
                offloaded.restore()
            err = float((got_logits - want_logits).abs().max() / want_logits.abs().max())
            same = torch.equal(got, want)
            check(same and err <= TOL and served == LAYERS,
                  f"{label}: greedy generate() after moe_serve.hf.offload ({LAYERS} blocks on the router): tokens "
                  f"{'identical' if same else 'DIFFER'} ({got[0, 5:].tolist()}), logits rel err {err:.2e}")
            if ckpt is not None:  # None: a source from_pretrained does not read (GGUF)
                from_pretrained_check(model, ckpt, client, ids, want, want_logits, check, label, **load)
            if label not in BF16_CHECKED:
                return
            # bf16: the model's own bf16 forward against the same model with its blocks on the
            # router (bf16 on the wire, f32 weights and accumulation there, rounded once).
            model.to(torch.bfloat16)
            try:
                want16 = model(ids).logits.float()
                offloaded = moe_serve.hf.offload(model, client, dense=True, keep_originals=True, stream=False)
                try:
                    got16 = model(ids).logits.float()
                finally:
                    offloaded.restore()
            finally:
                model.float()
            err16 = float((got16 - want16).abs().max() / want16.abs().max())
            ref_err = float((want16 - want_logits).abs().max() / want_logits.abs().max())
            check(err16 <= 5e-2, f"{label}: bf16 logits with the blocks offloaded vs HF's bf16 model: rel err "
                                 f"{err16:.2e} (HF's bf16 vs its f32: {ref_err:.2e})")


def from_pretrained_check(model, ckpt, client, ids, want, want_logits, check, label, **load):
    """moe_serve.hf.from_pretrained builds the model from `ckpt` (`load`: more arguments for it)
    with every MLP block on the router (never materialised): it holds only the non-served
    tensors, equal to HF's, and its greedy generate() and logits match HF's full model."""
    try:
        served = moe_serve.hf.from_pretrained(ckpt, client, dense=True, dtype=torch.float32,
                                              model_class=type(model), **load)
    except Exception as ours:  # noqa: BLE001 — allowed only where transformers fails the same way
        try:
            type(model).from_pretrained(ckpt, dtype=torch.float32)
            theirs = None
        except Exception as e:  # noqa: BLE001
            theirs = e
        check(theirs is not None and type(theirs) is type(ours),
              f"{label}: moe_serve.hf.from_pretrained failed ({type(ours).__name__}: {str(ours)[:120]}); "
              f"transformers' own from_pretrained of the same save_pretrained folder "
              f"{'fails the same way' if theirs is not None else 'WORKS'}")
        return
    theirs = dict(model.named_parameters())
    ours = dict(served.named_parameters())
    path_of = {id(m): name for name, m in model.named_modules()}
    layers = moe_serve.hf.decoder_layers(model)
    blocks = tuple(f"{path_of[id(layers[i])]}.{n}." for i, n in zip(served.moe_serve.layers, served.moe_serve.names))
    blocks += tuple(f"{path_of[id(layers[i])]}.shared_mlp." for i in served.moe_serve.layers)
    kept = {n for n in theirs if not n.startswith(blocks)}
    same_weights = set(ours) == kept and all(torch.equal(ours[n], theirs[n]) for n in kept)
    with torch.no_grad():
        got = served.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        got_logits = served(ids).logits
    err = float((got_logits - want_logits).abs().max() / want_logits.abs().max())
    same = torch.equal(got, want)
    check(same and err <= TOL and same_weights and len(served.moe_serve.layers) == LAYERS,
          f"{label}: moe_serve.hf.from_pretrained: {len(ours)} tensors loaded "
          f"({'equal to HF' if same_weights else 'NOT the non-served tensors of HF'}), greedy generate() tokens "
          f"{'identical' if same else 'DIFFER'}, logits rel err {err:.2e}")


def mismatch_check(model_type, fields, cluster, check, label):
    """offload() refuses a model that does not match the router's GetModelInfo, naming why."""
    config = AutoConfig.for_model(model_type, **{**SMALL, **fields, "num_hidden_layers": LAYERS - 1})
    other = AutoModelForCausalLM.from_config(config).float().eval()
    try:
        moe_serve.hf.offload(other, cluster.router)
        check(False, f"{label}: offload of a model with {LAYERS - 1} layers into a {LAYERS}-layer router refused")
    except ValueError as e:
        check("decoder layers" in str(e), f"{label}: offload of a mismatched model refused: {e}")


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def quantize_mxfp4(ckpt, deq_dir):
    """Rewrites gpt-oss's stacked experts as its hub checkpoints ship them: `<name>_blocks` U8
    [E, N, K/32, 16] (two e2m1 per byte, low nibble first) and `<name>_scales` U8 [E, N, K/32]
    (e8m0) of the [E, N, K] matrices (rows = output features), quantization_config mxfp4; writes
    the same weights dequantized by transformers' own convert_moe_packed_tensors to `deq_dir`."""
    from safetensors.torch import load_file, save_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    shutil.copytree(ckpt, deq_dir)
    index = json.load(open(os.path.join(ckpt, "model.safetensors.index.json")))
    quantized = 0
    for shard in sorted(set(index["weight_map"].values())):
        tensors = load_file(os.path.join(ckpt, shard))
        q, deq = {}, {}
        for name, w in tensors.items():
            if not name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                q[name], deq[name] = w, w
                continue
            m = w.transpose(1, 2).float()  # [E, N, K]
            e, n, k = m.shape
            groups = m.reshape(e, n, k // 32, 32)
            amax = groups.abs().amax(-1).clamp(min=1e-30)
            exponent = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
            scaled = groups / torch.pow(2.0, exponent)[..., None]
            codes = (scaled[..., None] - E2M1).abs().argmin(-1).to(torch.uint8)  # nearest e2m1
            blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
            scales = (exponent + 127).to(torch.uint8)
            q[name + "_blocks"], q[name + "_scales"] = blocks.contiguous(), scales.contiguous()
            index["weight_map"].pop(name)
            index["weight_map"][name + "_blocks"] = index["weight_map"][name + "_scales"] = shard
            deq[name] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)  # [E, K, N]
            quantized += 1
        save_file(q, os.path.join(ckpt, shard), metadata={"format": "pt"})
        save_file(deq, os.path.join(deq_dir, shard), metadata={"format": "pt"})
    json.dump(index, open(os.path.join(ckpt, "model.safetensors.index.json"), "w"))
    config = json.load(open(os.path.join(ckpt, "config.json")))
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["router", "lm_head"]}
    json.dump(config, open(os.path.join(ckpt, "config.json"), "w"), indent=2)
    return quantized


def transpose_stacked(ckpt):
    """Rewrites `ckpt`'s stacked expert tensors (`experts.gate_up_proj` [E, 2I, H], `down_proj`
    [E, H, I], as save_pretrained writes them) transposed, [E, H, 2I] and [E, I, H], as the hub
    ships Qwen3-VL-MoE; transformers transposes them back when it loads (Transpose(check_dims))."""
    from safetensors.numpy import load_file, save_file
    count = 0
    for name in sorted(os.listdir(ckpt)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(ckpt, name)
        tensors = load_file(path)
        for key in list(tensors):
            if key.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
                tensors[key] = np.ascontiguousarray(tensors[key].transpose(0, 2, 1))
                count += 1
        save_file(tensors, path, metadata={"format": "pt"})
    return count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--only", default="", help="comma-separated labels to run")
    args = ap.parse_args()
    # Our own folder: ctest runs the NumPy golden test beside us in the same test_tmp.
    args.tmp = os.path.join(args.tmp, "hf_parity")
    os.makedirs(args.tmp, exist_ok=True)
    torch.set_num_threads(1)
    print(f"hf_parity: torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    check = Checks()

    rng = np.random.default_rng(2026)
    only = set(filter(None, args.only.split(",")))
    gpt_oss = next(fields for label, _, fields in CASES if label == "gpt_oss")
    fields_of = {label: fields for label, _, fields in CASES}
    cases = CASES + [("deepseek_v3 fp8", "deepseek_v3", fields_of["deepseek_v3"]),
                     ("glm4_moe fp8", "glm4_moe", fields_of["glm4_moe"]),
                     ("gpt_oss mxfp4", "gpt_oss", dict(gpt_oss, intermediate_size=32)),
                     ("qwen3_vl_moe hub", "qwen3_vl_moe", fields_of["qwen3_vl_moe"])]
    for label, model_type, fields in cases:
        if only and label not in only:
            continue
        fp8 = label.endswith("fp8")
        mxfp4 = label.endswith("mxfp4")
        torch.manual_seed(7)
        if "text_config" in fields:  # a multimodal wrapper around a served text decoder
            config = AutoConfig.for_model(model_type, **fields)
            model = AutoModelForImageTextToText.from_config(config).float().eval()
        else:
            config = AutoConfig.for_model(model_type, **{**SMALL, **fields})
            if model_type in CAUSAL_LM_NOT_IN_AUTO:
                model = getattr(transformers, CAUSAL_LM_NOT_IN_AUTO[model_type])(config).float().eval()
            else:
                model = AutoModelForCausalLM.from_config(config).float().eval()
        spread_router(model, rng)
        ckpt = os.path.join(args.tmp, "hf-" + label.replace(" ", "-"))
        shutil.rmtree(ckpt, ignore_errors=True)
        model.save_pretrained(ckpt, max_shard_size="100KB")
        shards = len([f for f in os.listdir(ckpt) if f.endswith(".safetensors")])
        if label.endswith(" hub"):  # the hub's layout; the reference is HF's model loaded from it
            count = transpose_stacked(ckpt)
            check(count > 0, f"{label}: {count} stacked expert tensors written transposed, as the hub ships them")
            before = {n: p.detach().clone() for n, p in model.named_parameters() if ".experts." in n}
            model = AutoModelForImageTextToText.from_pretrained(ckpt, dtype=torch.float32).eval()
            same = all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
            check(same and before, f"{label}: transformers reads the transposed tensors back as the model's own")
        if fp8 or mxfp4:
            # Served from the quantized checkpoint (kept as stored on the workers, f32 compute); the
            # reference is HF's model loaded from the same weights dequantized by transformers' own
            # functions.
            deq = ckpt + "-dequantized"
            shutil.rmtree(deq, ignore_errors=True)
            count = (quantize_fp8 if fp8 else quantize_mxfp4)(ckpt, deq)
            what = f"MLP weights as F8_E4M3 with {FP8_BLOCK} block scales" if fp8 else \
                "stacked expert tensors as MXFP4 blocks + e8m0 scales"
            check(count > 0, f"{label}: {count} {what}")
            model = AutoModelForCausalLM.from_pretrained(deq, dtype=torch.float32).eval()
        xs = [rng.normal(0, 1, (N_TOKENS, H)).astype(np.float32) for _ in range(LAYERS)]
        refs = [hf_reference(model, layer, xs[layer]) for layer in range(LAYERS)]
        moe_layers = sum(r[1] is not None for r in refs)
        check(moe_layers > 0, f"{label}: {shards} shards, {moe_layers} of {LAYERS} layers MoE in HF's model")
        if model_type == "longcat_flash":
            zero_picks = sum(r[2] for r in refs)
            check(zero_picks > 0, f"{label}: HF chose zero (identity) experts {zero_picks} times")
        for mode, workers in (("in-process", 0), ("networked", 3)):
            cluster = Cluster(args.bin, ckpt, workers, f32_compute=fp8 or mxfp4, quiet=True)
            try:
                for layer in range(LAYERS):
                    got, routing = run_client(args.bin, cluster.router, layer, xs[layer], args.tmp)
                    ref_out, ref_experts, _ = refs[layer]
                    err = np.abs(got - ref_out).max() / np.abs(ref_out).max()
                    if ref_experts is None:
                        check(err <= TOL, f"{label}, {mode}, layer {layer} (dense): rel err {err:.2e}")
                        continue
                    ours = [sorted(r["experts"]) for r in routing]
                    differ = sum(a != b for a, b in zip(ours, ref_experts))
                    check(differ == 0 and err <= TOL,
                          f"{label}, {mode}, layer {layer}: experts {'identical' if differ == 0 else 'DIFFER'} "
                          f"for {N_TOKENS - differ}/{N_TOKENS} tokens, rel err {err:.2e}")
                if mode == "in-process":
                    generate_check(model, cluster, check, label, ckpt)
                    if label == "mixtral":
                        mismatch_check(model_type, fields, cluster, check, label)
            finally:
                cluster.stop()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
