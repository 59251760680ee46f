// server/common/build_info.cc
#include "server/common/build_info.h"

#include "prometheus/gauge.h"

namespace moe::server {

void RegisterBuildInfo(prometheus::Registry& registry) {
  prometheus::BuildGauge()
      .Name("moe_build_info")
      .Help("Build of this moe-serve binary (always 1).")
      .Register(registry)
      .Add({{"version", MOE_VERSION}, {"git_sha", MOE_GIT_SHA}})
      .Set(1);
}

const char* BuildVersion() { return MOE_VERSION; }

}  // namespace moe::server
