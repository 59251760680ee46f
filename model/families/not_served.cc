// model/families/not_served.cc
#include "model/families/not_served.h"

namespace moe::model {
namespace {

constexpr NotServed kNotServed[] = {
    // Multimodal wrappers whose text decoder is served under its own model_type.
    {"llama4", false, "it is the multimodal wrapper: serve its text model (model_type llama4_text)"},
    // New routing or expert math.
    {"deepseek_v4", false,
     "it scores experts by sqrt(softplus(logit)) and routes its hash_moe layers by token id "
     "(tid2eid), which needs the token ids in a Forward"},
    {"gemma4", false,
     "its router reads the residual through a weightless RMSNorm and scales each route by "
     "per_expert_scale, its experts are GeGLU, and its MoE block owns two norms beside a dense MLP"},
    {"gemma4_text", false,
     "its router reads the residual through a weightless RMSNorm and scales each route by "
     "per_expert_scale, its experts are GeGLU, and its MoE block owns two norms beside a dense MLP"},
    {"mistral_large4", false, "it limits groups over softmax scores (top-2 sum, masked to 0); Mistral-native tensor names"},
    {"minimax_m3_vl", false,
     "it scales the routed output after the combine and uses a clamped SwiGLU on concatenated "
     "gate|up halves without biases, with a fused shared MLP"},
    {"step3p7", false,
     "it clamps after SiLU with per-layer limits (swiglu_limits), stacks each projection per layer, "
     "and scales the routed output after the combine"},
    {"step3p5", false,
     "it clamps after SiLU with per-layer limits (swiglu_limits), stacks each projection per layer, "
     "and scales the routed output after the combine"},
    {"nemotron_h", false,
     "its experts are non-gated relu² MLPs (up, down), optionally between latent projections, "
     "in a Mamba/attention/MoE mixer schedule"},
    {"muse_spark", false, "its MoE is latent (projections before and after the experts, per-route post-expert norm)"},
    {"inkling", false, "its router scores the shared experts with the routed ones (a sink normalisation)"},
    {"inkling2", false, "its router scores the shared experts with the routed ones (a sink normalisation)"},
    {"laguna", false, "it soft-caps the router logits with tanh and scales the routed output after the combine"},
    {"kolibri1", false, "it selects top-k on logits plus a bias and weights by the sigmoid of the chosen logits"},
    {"kolibri1_1", false, "it selects top-k on logits plus a bias and weights by the sigmoid of the chosen logits"},
    {"axk1", false, "its MoE output goes through a post-MLP RMSNorm"},
    {"ergo", false, "its experts are non-gated relu² with a per-expert RMSNorm on each route's output"},
    {"glm5_next", false, "its routed and shared experts use a clamped SwiGLU (swiglu_limit)"},
    {"hy_v4", false, "its routed experts use a clamped SwiGLU (swiglu_limit) and its hub tensors are stacked"},
    {"hy_v4_vl", false, "its routed experts use a clamped SwiGLU (swiglu_limit) and its hub tensors are stacked"},
    {"cohere2_moe", false, "it may select with a sigmoid and combine routed and shared experts by their average"},
    {"lfm2_moe", false, "it renormalises with epsilon 1e-6 over sigmoid scores taken in the model's dtype"},
    {"jetmoe", false, "its experts add an output bias (mlp.bias) and it has mixture-of-attention layers"},
    {"aria", false, "its wrapper (vision tower, nested text_config) is not mapped yet; its text decoder is served as aria_text"},
    {"dots3_note", false, "its shared experts have their own width (shared_experts_intermediate_size) and it nests its text config"},
    {"minicpm5_moe", false, "not in the pinned transformers yet, so there is no reference to test it against"},
    {"param2moe", false, "not in the pinned transformers yet, so there is no reference to test it against"},
    // Multimodal wrappers not mapped yet.
    {"qwen3_omni_moe", false, "its thinker's decoder nests under thinker_config.text_config and its talker has its own MoE"},
    {"ernie4_5_vl_moe", false, "it routes text and vision tokens through separate gates over one expert list"},
    {"deepseek_ocr2", false, "its decoder is DeepSeek-V2's, but its wrapper (nested config, weight prefix) is not mapped yet"},
    {"qwen4_exp", false, "its MoE block is Qwen3-Next's, but its wrapper (nested config, weight prefix) is not mapped yet"},
    // Refused by design.
    {"doge", true,
     "its product-key routing reshapes across tokens over 16384 single-neuron experts, so a token's "
     "experts are not a function of its own hidden state"},
    {"zaya", true, "its router carries state from the previous layer (and a skip class)"},
    {"switch_transformers", true,
     "it is an encoder-decoder with ReLU experts and capacity routing over the batch; 'switch_moe' "
     "is a decoder MoE layer with Switch top-1 routing"},
    {"nllb_moe", true, "it is an encoder-decoder with capacity routing over the batch"},
};

}  // namespace

const NotServed* FindNotServed(absl::string_view model_type) {
  for (const NotServed& n : kNotServed) {
    if (model_type == n.model_type) return &n;
  }
  return nullptr;
}

}  // namespace moe::model
