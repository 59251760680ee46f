// tests/base/byte_size_test.cc
// Byte sizes in flags: binary and decimal units, fractions, and everything else refused.
#include "base/byte_size.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::base {
namespace {

using ::moe::testing::StatusIs;

TEST(ByteSizeTest, ParsesUnits) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096);
  EXPECT_EQ(*ParseByteSize("64GiB"), int64_t{64} << 30);
  EXPECT_EQ(*ParseByteSize(" 512 MiB "), int64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("1.5g"), int64_t{3} << 29);
  EXPECT_EQ(*ParseByteSize("2GB"), 2000000000);
  EXPECT_EQ(*ParseByteSize("3kb"), 3000);
  EXPECT_EQ(*ParseByteSize("1TiB"), int64_t{1} << 40);
  EXPECT_EQ(*ParseByteSize("0"), 0);
}

TEST(ByteSizeTest, RefusesTheRest) {
  for (const char* bad : {"", "GiB", "-1GiB", "12 parsecs", "1e3", "nan", "1.2.3G", "9000000TiB"}) {
    EXPECT_THAT(ParseByteSize(bad), StatusIs(absl::StatusCode::kInvalidArgument, "is not a byte size")) << bad;
  }
}

TEST(ByteSizeTest, Formats) {
  EXPECT_EQ(FormatByteSize(900), "900 B");
  EXPECT_EQ(FormatByteSize(int64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(FormatByteSize(int64_t{512} << 20), "512.0 MiB");
}

}  // namespace
}  // namespace moe::base
