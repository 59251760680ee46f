// tests/base/program_test.cc
// Which flags --help lists: the program's own, never Abseil's. (Each binary's --help is checked
// end to end by tests/integration/help_test.sh.)
#include "base/program.h"

#include "gtest/gtest.h"

namespace moe::base {
namespace {

TEST(ProgramTest, ListsOwnFlagsNotAbseils) {
  EXPECT_TRUE(IsProgramFlagFile("server/router/router_main.cc"));
  EXPECT_TRUE(IsProgramFlagFile("/src/moe-serve/bench/bench_local_main.cc"));
  EXPECT_FALSE(IsProgramFlagFile("absl/flags/parse.cc"));
  EXPECT_FALSE(IsProgramFlagFile("/build/abseil-cpp/absl/flags/internal/usage.cc"));
}

}  // namespace
}  // namespace moe::base
