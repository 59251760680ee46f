"""Golden parity of every MoE family against an independent NumPy reference.

For each family this writes a checkpoint with the `safetensors` package itself (not with our
writer), computes each layer's output in float64 NumPy from routing.md (and DeepSeek's published
gate code; Ling 1.x/2.0's bailing_moe, which transformers does not have, from its remote code's
math as docs/ROUTING.md states it), and compares moe-serve's answers — in-process (a --local router) and over the network
(router + workers, shared experts in the router or on a worker) — token by token: the selected
experts must be identical for every token without a near-tie, and the output relative error
≤ 1e-5 (f32). Run by ctest through the virtualenv that scripts/test.sh makes (numpy, safetensors).
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

from moe_processes import Checks, Cluster, run_client

H, MOE_I, DENSE_I, E, N_TOKENS = 32, 24, 40, 8, 41
TIE = 1e-4      # selection margins below this are near-ties: routing may legitimately differ
TOL = 1e-5


def config_for(family, **over):
    base = {"hidden_size": H, "num_hidden_layers": 3, "num_experts_per_tok": 2, "hidden_act": "silu",
            "torch_dtype": "float32"}
    if family == "mixtral":
        c = {"model_type": "mixtral", "num_local_experts": E, "intermediate_size": MOE_I}
    elif family in ("qwen2_moe", "qwen3_moe"):
        c = {"model_type": family, "num_experts": E, "moe_intermediate_size": MOE_I, "intermediate_size": DENSE_I,
             "norm_topk_prob": False, "decoder_sparse_step": 1, "mlp_only_layers": [0]}
        if family == "qwen2_moe":
            c["shared_expert_intermediate_size"] = 36
    elif family == "olmoe":
        c = {"model_type": "olmoe", "num_experts": E, "intermediate_size": MOE_I, "norm_topk_prob": False}
    elif family in ("deepseek_v2", "deepseek_v3"):
        v3 = family == "deepseek_v3"
        c = {"model_type": family, "n_routed_experts": E, "moe_intermediate_size": MOE_I, "intermediate_size": DENSE_I,
             "n_shared_experts": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1,
             "scoring_func": "sigmoid" if v3 else "softmax", "topk_method": "noaux_tc" if v3 else "greedy",
             "n_group": 4 if v3 else 1, "topk_group": 2 if v3 else 1, "norm_topk_prob": v3,
             "routed_scaling_factor": 2.5 if v3 else 16.0}
    elif family == "bailing_moe":  # Ling 2.0's router by default; Ling 1.x's with overrides
        c = {"model_type": "bailing_moe", "num_experts": E, "moe_intermediate_size": MOE_I,
             "intermediate_size": DENSE_I, "num_shared_experts": 1, "first_k_dense_replace": 1,
             "score_function": "sigmoid", "moe_router_enable_expert_bias": True, "n_group": 4, "topk_group": 2,
             "norm_topk_prob": True, "routed_scaling_factor": 2.5}
    elif family == "switch_moe":
        c = {"model_type": "switch_moe", "num_experts": E, "intermediate_size": MOE_I, "capacity_factor": 1.0}
        base["num_experts_per_tok"] = 1
    c.update(base)
    c.update(over)
    return c


def is_moe(c, layer):
    t = c["model_type"]
    if t in ("qwen2_moe", "qwen3_moe"):
        return layer not in c["mlp_only_layers"] and (layer + 1) % c["decoder_sparse_step"] == 0
    if t.startswith("deepseek"):
        return layer >= c["first_k_dense_replace"] and layer % c["moe_layer_freq"] == 0
    if t == "bailing_moe":
        return layer >= c["first_k_dense_replace"]
    return True


def names(c, layer):
    """Tensor names of a layer, per family (routing.md)."""
    p = f"model.layers.{layer}."
    if c["model_type"] == "mixtral":
        return {"gate": p + "block_sparse_moe.gate.weight",
                "expert": lambda e, w: p + f"block_sparse_moe.experts.{e}.{ {'gate': 'w1', 'up': 'w3', 'down': 'w2'}[w] }.weight"}
    bias = "mlp.gate.expert_bias" if c["model_type"] == "bailing_moe" else "mlp.gate.e_score_correction_bias"
    n = {"gate": p + "mlp.gate.weight", "bias": p + bias,
         "expert": lambda e, w: p + f"mlp.experts.{e}.{w}_proj.weight",
         "dense": lambda w: p + f"mlp.{w}_proj.weight", "shared_gate": p + "mlp.shared_expert_gate.weight"}
    block = "shared_expert" if c["model_type"] == "qwen2_moe" else "shared_experts"
    n["shared"] = lambda w: p + f"mlp.{block}.{w}_proj.weight"
    return n


def make_weights(c, rng, bias_range):
    w = {}

    def mlp(name_of, inter):
        w[name_of("gate")] = rng.normal(0, H ** -0.5, (inter, H)).astype(np.float32)
        w[name_of("up")] = rng.normal(0, H ** -0.5, (inter, H)).astype(np.float32)
        w[name_of("down")] = rng.normal(0, inter ** -0.5, (H, inter)).astype(np.float32)

    for layer in range(c["num_hidden_layers"]):
        n = names(c, layer)
        if not is_moe(c, layer):
            mlp(n["dense"], c["intermediate_size"])
            continue
        w[n["gate"]] = rng.normal(0, H ** -0.5, (E, H)).astype(np.float32)
        for e in range(E):
            mlp(lambda p, e=e: n["expert"](e, p), MOE_I)
        if c["model_type"] == "deepseek_v3" or c.get("moe_router_enable_expert_bias"):
            w[n["bias"]] = rng.uniform(*bias_range, E).astype(np.float32)
        if c["model_type"] == "qwen2_moe":
            w[n["shared_gate"]] = rng.normal(0, H ** -0.5, (1, H)).astype(np.float32)
            mlp(n["shared"], c["shared_expert_intermediate_size"])
        if c["model_type"].startswith("deepseek"):
            mlp(n["shared"], c["n_shared_experts"] * MOE_I)
        if c["model_type"] == "bailing_moe" and c["num_shared_experts"] > 0:
            mlp(n["shared"], c["num_shared_experts"] * MOE_I)
    return w


def run_mlp(w, name_of, x):
    g = x @ w[name_of("gate")].astype(np.float64).T
    u = x @ w[name_of("up")].astype(np.float64).T
    return (g / (1 + np.exp(-g)) * u) @ w[name_of("down")].astype(np.float64).T


def reference(c, w, layer, x):
    """Output [n, H], chosen experts per token (selection order) and each token's selection margin."""
    n_tok = x.shape[0]
    n = names(c, layer)
    if not is_moe(c, layer):
        return run_mlp(w, n["dense"], x), [[] for _ in range(n_tok)], np.full(n_tok, np.inf)
    t, k = c["model_type"], c["num_experts_per_tok"]
    logits = x @ w[n["gate"]].astype(np.float64).T
    if c.get("scoring_func", c.get("score_function")) == "sigmoid":
        scores = 1 / (1 + np.exp(-logits))
    else:
        scores = np.exp(logits - logits.max(1, keepdims=True))
        scores /= scores.sum(1, keepdims=True)
    biased = t == "deepseek_v3" or c.get("moe_router_enable_expert_bias")
    sel = scores + (w[n["bias"]].astype(np.float64) if biased else 0)
    margins = np.full(n_tok, np.inf)
    if t == "bailing_moe" and c["n_group"] > 1:
        c = dict(c, topk_method="noaux_tc")  # Ling 2.0 scores groups by their top-2 sum
    if c.get("topk_method") in ("group_limited_greedy", "noaux_tc"):
        g = sel.reshape(n_tok, c["n_group"], -1)
        gs = np.sort(g, axis=2)[:, :, -2:].sum(2) if c["topk_method"] == "noaux_tc" else g.max(2)
        order_g = np.argsort(-gs, axis=1, kind="stable")
        keep = order_g[:, :c["topk_group"]]
        margins = np.minimum(margins, np.take_along_axis(gs, order_g, 1)[:, c["topk_group"] - 1]
                             - np.take_along_axis(gs, order_g, 1)[:, c["topk_group"]])
        mask = np.zeros_like(gs, dtype=bool)
        np.put_along_axis(mask, keep, True, 1)
        sel = np.where(np.repeat(mask, E // c["n_group"], axis=1), sel, -np.inf)  # −∞, not 0.0
    order = np.argsort(-sel, axis=1, kind="stable")
    chosen = order[:, :k]
    sorted_sel = np.take_along_axis(sel, order, 1)
    if k < E:
        margins = np.minimum(margins, sorted_sel[:, k - 1] - sorted_sel[:, k])
    wts = np.take_along_axis(scores, chosen, 1)
    if t == "mixtral" or (t in ("qwen2_moe", "qwen3_moe", "olmoe") and c["norm_topk_prob"]):
        wts = wts / wts.sum(1, keepdims=True)
    elif t == "deepseek_v2":
        if k > 1 and c["norm_topk_prob"]:
            wts = wts / (wts.sum(1, keepdims=True) + 1e-20)
        else:
            wts = wts * c["routed_scaling_factor"]
    elif t == "deepseek_v3":
        if k > 1 and c["norm_topk_prob"]:
            wts = wts / (wts.sum(1, keepdims=True) + 1e-20)
        wts = wts * c["routed_scaling_factor"]
    elif t == "bailing_moe":
        if c["norm_topk_prob"]:
            wts = wts / (wts.sum(1, keepdims=True) + 1e-20)
        wts = wts * c.get("routed_scaling_factor", 1.0)
    chosen_lists = [list(map(int, row)) for row in chosen]
    if t == "switch_moe":  # capacity in token order; past it the token gets no expert output
        cap = int(np.ceil(c["capacity_factor"] * n_tok * k / E))
        load = np.zeros(E, dtype=int)
        for i in range(n_tok):
            e = chosen_lists[i][0]
            if load[e] < cap:
                load[e] += 1
            else:
                chosen_lists[i] = []
    out = np.zeros_like(x)
    for i in range(n_tok):
        for j, e in enumerate(chosen_lists[i]):
            out[i] += wts[i, j] * run_mlp(w, lambda p, e=e: n["expert"](e, p), x[i:i + 1])[0]
    if t == "qwen2_moe":
        gate = 1 / (1 + np.exp(-(x @ w[n["shared_gate"]].astype(np.float64).T)))
        out += gate * run_mlp(w, n["shared"], x)
    if t.startswith("deepseek") or (t == "bailing_moe" and c["num_shared_experts"] > 0):
        out += run_mlp(w, n["shared"], x)
    return out, chosen_lists, margins


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    check = Checks()

    cases = [
        ("mixtral", {}, (0, 0)),
        ("qwen2_moe", {"norm_topk_prob": False}, (0, 0)),
        ("qwen2_moe", {"norm_topk_prob": True}, (0, 0)),
        ("qwen3_moe", {"norm_topk_prob": True}, (0, 0)),
        ("olmoe", {}, (0, 0)),
        ("deepseek_v2", {}, (0, 0)),
        ("deepseek_v2", {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
                         "norm_topk_prob": True}, (0, 0)),
        # Biases below -1 make every biased score negative: the −∞ vs 0.0 mask case.
        ("deepseek_v3", {}, (-1.2, -0.6)),
        ("switch_moe", {}, (0, 0)),
        # Ling 2.0 (sigmoid, expert bias, groups, x2.5) and Ling 1.x (softmax, no bias or groups).
        ("bailing_moe", {}, (-0.3, 0.3)),
        ("bailing_moe", {"score_function": "softmax", "moe_router_enable_expert_bias": False, "n_group": 1,
                         "topk_group": 1, "routed_scaling_factor": 1.0, "num_shared_experts": 0,
                         "first_k_dense_replace": 0}, (0, 0)),
    ]
    rng = np.random.default_rng(2026)
    for family, over, bias_range in cases:
        c = config_for(family, **over)
        label = family + "".join(f" {k}={v}" for k, v in over.items())
        ckpt = os.path.join(args.tmp, "golden-" + label.replace(" ", "_").replace("=", "-"))
        os.makedirs(ckpt, exist_ok=True)
        w = make_weights(c, rng, bias_range)
        save_file(w, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
        json.dump(c, open(os.path.join(ckpt, "config.json"), "w"), indent=2)
        xs = [rng.normal(0, 1, (N_TOKENS, H)).astype(np.float32) for _ in range(c["num_hidden_layers"])]
        refs = [reference(c, w, layer, xs[layer].astype(np.float64)) for layer in range(c["num_hidden_layers"])]
        if family == "deepseek_v3":
            # Prove the inputs exercise the masking difference: a 0.0 fill would choose otherwise.
            n = names(c, 1)
            s = 1 / (1 + np.exp(-(xs[1].astype(np.float64) @ w[n["gate"]].astype(np.float64).T)))
            sel = (s + w[n["bias"]]).reshape(N_TOKENS, 4, -1)
            gs = np.sort(sel, 2)[:, :, -2:].sum(2)
            keep = np.argsort(-gs, 1, kind="stable")[:, :2]
            mask = np.zeros_like(gs, dtype=bool)
            np.put_along_axis(mask, keep, True, 1)
            zero_fill = np.where(np.repeat(mask, 2, 1), sel.reshape(N_TOKENS, -1), 0.0)
            differs = sum(set(np.argsort(-zero_fill[i], kind="stable")[:2]) != set(refs[1][1][i]) for i in range(N_TOKENS))
            check(differs > 0, f"{label}: {differs} tokens would route differently with a 0.0 group mask")
        if family == "switch_moe":
            dropped = sum(1 for layer in refs for chosen in layer[1] if not chosen)
            check(dropped > 0, f"{label}: capacity drops {dropped} token-layer pairs in this data")
        modes = [("in-process", 0, False), ("networked", 3, False)]
        if family in ("qwen2_moe", "deepseek_v3"):
            modes.append(("networked, shared experts on a worker", 3, True))
        for mode, workers, shared_on_workers in modes:
            cluster = Cluster(args.bin, ckpt, workers, shared_on_workers)
            try:
                for layer in range(c["num_hidden_layers"]):
                    got, routing = run_client(args.bin, cluster.router, layer, xs[layer], args.tmp)
                    ref_out, ref_chosen, margins = refs[layer]
                    clear = margins > TIE
                    same = all(routing[i]["experts"] == ref_chosen[i] for i in range(N_TOKENS) if clear[i])
                    diff = np.abs(got[clear] - ref_out[clear]).max()
                    err = diff / np.abs(ref_out[clear]).max()
                    check(same and err <= TOL,
                          f"{label}, {mode}, layer {layer}: experts {'identical' if same else 'DIFFER'} "
                          f"for {clear.sum()}/{N_TOKENS} tokens without a near-tie, rel err {err:.2e}")
            finally:
                cluster.stop()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
