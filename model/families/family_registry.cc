// model/families/family_registry.cc
// The list of families (an explicit list rather than self-registration: a static library drops
// object files nothing refers to).
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kMixtral, kQwen2Moe, kQwen3Moe, kQwen3Next, kOlmoe, kDeepseekV2, kDeepseekV3,
    kDeepseekV32, kGlm4Moe, kDots1, kMinimaxM2, kHunyuanV1Moe, kJamba, kGraniteMoe, kGraniteMoeShared, kLlama4Text, kErnie45Moe, kPhimoe, kGptOss, kQwen35MoeText, kQwen3VlMoeText, kMistral4, kFlint, kLaraMini, kAriaText, kAfmoe, kDbrx, kBailingMoe, kBailingHybrid, kLongcatFlash, kSwitchMoe, kExaoneMoe, kHyV3, kSarvamMoe, kBeam, kGraniteMoeSwa, kKimiLinear;

const std::vector<const FamilyDescriptor*>& AllFamilies() {
  static const std::vector<const FamilyDescriptor*> families = {
      &kMixtral, &kQwen2Moe,    &kQwen3Moe, &kQwen3Next,    &kOlmoe, &kDeepseekV2, &kDeepseekV3,
      &kDeepseekV32, &kGlm4Moe, &kDots1,    &kMinimaxM2, &kHunyuanV1Moe, &kJamba, &kGraniteMoe, &kGraniteMoeShared, &kLlama4Text, &kErnie45Moe, &kPhimoe, &kGptOss, &kQwen35MoeText, &kQwen3VlMoeText, &kMistral4, &kFlint, &kLaraMini, &kAriaText, &kAfmoe, &kDbrx, &kBailingMoe, &kBailingHybrid, &kLongcatFlash, &kSwitchMoe, &kExaoneMoe, &kHyV3, &kSarvamMoe, &kBeam, &kGraniteMoeSwa, &kKimiLinear};
  return families;
}

}  // namespace moe::model
