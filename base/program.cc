// base/program.cc
#include "base/program.h"

#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace moe::base {

bool IsProgramFlagFile(absl::string_view file) {
  return !absl::StartsWith(file, "absl/") && !absl::StrContains(file, "/absl/");
}

std::vector<char*> InitProgram(int argc, char** argv, absl::string_view usage) {
  // Debian's Abseil is built with Mutex deadlock detection on, which records every lock in a
  // graph (GraphCycles, ~1 % of a loaded router's CPU in a profile); the tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_helpshort_flags = IsProgramFlagFile;
  config.contains_help_flags = IsProgramFlagFile;
  // "Flags from server/router/router_main.cc", not the build machine's absolute path.
  config.normalize_filename = [](absl::string_view file) {
    absl::ConsumePrefix(&file, MOE_SOURCE_DIR "/");
    return std::string(file);
  };
  config.version_string = [] { return absl::StrCat("moe-serve ", MOE_VERSION, " (", MOE_GIT_SHA, ")\n"); };
  absl::SetFlagsUsageConfig(config);
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace moe::base
