// tests/fuzz/config_fuzz.cc
// config.json of any family as arbitrary bytes (ModelConfig::Parse: JSON, model_type, every
// family's fields and aliases, layer rules), and the same bytes as a shard index.
#include <string>

#include "model/checkpoint.h"
#include "model/model_config.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = moe::model::ModelConfig::Parse(text);
  if (config.ok()) {
    for (int l = 0; l < config->num_layers; ++l) (void)config->IsMoeLayer(l);
    (void)config->TotalParameters();
  }
  (void)moe::model::ParseShardIndex(text, "fuzz/model.safetensors.index.json");
  return 0;
}
