// tools/make_checkpoint_main.cc
// moe-make-checkpoint: writes a seeded random checkpoint of any supported family (config.json +
// safetensors, one file or N shards) that moe-expert, moe-router and the tests load like a real one.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "base/program.h"
#include "model/checkpoint_generator.h"
#include "model/gguf/gguf_writer.h"

ABSL_FLAG(std::string, out, "",
          "Folder to write the checkpoint into (created if missing); with --format=gguf, the .gguf file.");
ABSL_FLAG(std::string, format, "safetensors",
          "safetensors (a Hugging Face folder) or gguf (one llama.cpp GGUF file; families qwen2_moe, qwen3_moe, "
          "mixtral, deepseek_v2, deepseek_v3, glm4_moe; --quant q8_0, q4_0, q4_k or q6_k, else --dtype).");
ABSL_FLAG(std::string, family, "mixtral",
          "Model family (config.json model_type): mixtral, qwen2_moe, qwen3_moe, qwen3_next, olmoe, deepseek_v2, "
          "deepseek_v3, deepseek_v32, glm4_moe, dots1, minimax_m2, hunyuan_v1_moe, jamba, granitemoe, granitemoeshared, llama4_text, ernie4_5_moe, phimoe, gpt_oss, qwen3_5_moe_text, afmoe, "
          "switch_moe. Its "
          "routing defaults (groups, shared experts, dense first layer, ...) follow the family.");
ABSL_FLAG(int, hidden_size, 1024, "Model hidden size H.");
ABSL_FLAG(int, intermediate_size, 3584, "Per-expert intermediate size I (dense and shared MLPs are 2·I).");
ABSL_FLAG(int, num_experts, 8, "Experts per MoE layer (num_local_experts).");
ABSL_FLAG(int, top_k, 2, "Experts per token (num_experts_per_tok).");
ABSL_FLAG(int, num_layers, 4, "Number of layers (num_hidden_layers); DeepSeek's first is dense.");
ABSL_FLAG(std::string, dtype, "bf16", "Weight dtype: bf16, f16 or f32.");
ABSL_FLAG(std::string, quant, "none",
          "none; fp8: every MLP weight as FP8 e4m3 with 128x128 block scales (DeepSeek-V3's format; "
          "per-expert families); mxfp4: gpt_oss's stacked experts as MXFP4 blocks + e8m0 scales. Router "
          "weights and biases keep --dtype. With --format=gguf: q8_0, q4_0, q4_k or q6_k, every MLP weight "
          "(experts, shared, dense) in that llama.cpp type, gates and biases F32.");
ABSL_FLAG(int, shards, 1, "Number of safetensors shards (>1 writes model.safetensors.index.json).");
ABSL_FLAG(uint64_t, seed, 0, "Random seed; the same seed gives the same weights.");
ABSL_FLAG(double, skew, 1.0,
          "Skewed routing: expert 0's gate row in every MoE layer multiplied by this (at 10, Mixtral top-2 of 8 "
          "sends it about half the tokens of random inputs; 1 = an ordinary gate). For placement tests and "
          "benchmarks (moe-router --rebalance).");

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
      "Writes a seeded random checkpoint in a model family's Hugging Face layout.\n"
      "  moe-make-checkpoint --out=/tmp/model --hidden_size=1024 --intermediate_size=3584 "
      "--num_experts=8 --top_k=2 --num_layers=4\n"
      "  moe-make-checkpoint --format=gguf --family=qwen3_moe --quant=q4_k --out=/tmp/model.gguf");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "moe-make-checkpoint: --out is required (see --help)\n");
    return 2;
  }
  auto config = moe::model::DefaultConfig(absl::GetFlag(FLAGS_family), absl::GetFlag(FLAGS_hidden_size),
                                            absl::GetFlag(FLAGS_intermediate_size), absl::GetFlag(FLAGS_num_experts),
                                            absl::GetFlag(FLAGS_top_k), absl::GetFlag(FLAGS_num_layers));
  if (!config.ok()) {
    std::fprintf(stderr, "moe-make-checkpoint: --family: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format == "gguf") {
    moe::model::GgufGeneratorOptions gguf;
    gguf.config = *std::move(config);
    gguf.seed = absl::GetFlag(FLAGS_seed);
    const std::string quant = absl::GetFlag(FLAGS_quant);
    gguf.type = quant == "none" ? absl::GetFlag(FLAGS_dtype) : quant;
    if (absl::Status s = moe::model::WriteRandomGguf(out, gguf); !s.ok()) {
      std::fprintf(stderr, "moe-make-checkpoint: %s\n", s.ToString().c_str());
      return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    }
    std::printf("wrote %s: GGUF %s, %d layers × %d experts (top-%d), hidden %d, expert intermediate %d, %s\n",
                out.c_str(), gguf.config.model_type.c_str(), gguf.config.num_layers, gguf.config.num_experts,
                gguf.config.top_k, gguf.config.hidden_size, gguf.config.moe_intermediate_size, gguf.type.c_str());
    return 0;
  }
  if (format != "safetensors") {
    std::fprintf(stderr, "moe-make-checkpoint: --format must be safetensors or gguf, got '%s'\n", format.c_str());
    return 2;
  }
  moe::model::GeneratorOptions options;
  options.config = *std::move(config);
  options.num_shards = absl::GetFlag(FLAGS_shards);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.skew = static_cast<float>(absl::GetFlag(FLAGS_skew));
  if (!(options.skew > 0.0f)) {
    std::fprintf(stderr, "moe-make-checkpoint: --skew must be more than 0\n");
    return 2;
  }
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "bf16") {
    options.dtype = moe::model::DType::kBF16;
  } else if (dtype == "f16") {
    options.dtype = moe::model::DType::kF16;
  } else if (dtype == "f32") {
    options.dtype = moe::model::DType::kF32;
  } else {
    std::fprintf(stderr, "moe-make-checkpoint: --dtype must be bf16, f16 or f32, got '%s'\n",
                 dtype.c_str());
    return 2;
  }
  const std::string quant = absl::GetFlag(FLAGS_quant);
  if (quant != "none" && quant != "fp8" && quant != "mxfp4") {
    std::fprintf(stderr, "moe-make-checkpoint: --quant must be none, fp8 or mxfp4, got '%s'\n", quant.c_str());
    return 2;
  }
  options.fp8 = quant == "fp8";
  options.mxfp4 = quant == "mxfp4";
  if (absl::Status s = moe::model::WriteRandomCheckpoint(out, options); !s.ok()) {
    std::fprintf(stderr, "moe-make-checkpoint: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s: %s, %d layers × %d experts (top-%d), hidden %d, expert intermediate %d, %s, %d shard(s)\n",
              out.c_str(), options.config.model_type.c_str(), options.config.num_layers, options.config.num_experts,
              options.config.top_k, options.config.hidden_size, options.config.moe_intermediate_size,
              options.fp8 ? "fp8 e4m3 MLP weights" : options.mxfp4 ? "mxfp4 experts" : dtype.c_str(), options.num_shards);
  return 0;
}
