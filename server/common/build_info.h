// server/common/build_info.h
// The moe_build_info gauge that both processes export, labelled with the version and git SHA
// compiled into moe_server_common. Called once by each process's metrics at construction.
#pragma once

#include "prometheus/registry.h"

namespace moe::server {

// moe_build_info{version, git_sha} = 1, on any registry.
void RegisterBuildInfo(prometheus::Registry& registry);
// The version compiled in (e.g. for the Open Inference Protocol's ServerMetadata).
const char* BuildVersion();

}  // namespace moe::server
