// tests/server/common/token_auth_test.cc
// TokenAuth's pieces without a server: the constant-time comparison and the token file (read,
// whitespace stripped, refused when missing or empty). Calls with and without the token, and
// rotation, run against a real router in security_test.
#include "server/common/token_auth.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

TEST(TokenAuthTest, ConstantTimeEqualComparesLengthAndEveryByte) {
  EXPECT_TRUE(TokenAuth::ConstantTimeEqual("s3cret", "s3cret"));
  EXPECT_FALSE(TokenAuth::ConstantTimeEqual("s3cret", "s3creT"));
  EXPECT_FALSE(TokenAuth::ConstantTimeEqual("s3cret", "s3cre"));
  EXPECT_FALSE(TokenAuth::ConstantTimeEqual("s3cre", "s3cret"));
  EXPECT_FALSE(TokenAuth::ConstantTimeEqual("", "x"));
  EXPECT_TRUE(TokenAuth::ConstantTimeEqual("", ""));
  EXPECT_FALSE(TokenAuth::ConstantTimeEqual(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(TokenAuthTest, TheFileMustHoldAToken) {
  const std::string dir = testing::MakeTempDir("token");
  EXPECT_THAT(TokenAuth::FromFile(dir + "/missing"), testing::StatusIs(absl::StatusCode::kInvalidArgument, "cannot read"));
  std::ofstream(dir + "/empty") << "  \n";
  EXPECT_THAT(TokenAuth::FromFile(dir + "/empty"), testing::StatusIs(absl::StatusCode::kInvalidArgument, "holds no token"));
  std::ofstream(dir + "/ok") << "  abc123\n";
  EXPECT_OK(TokenAuth::FromFile(dir + "/ok").status());
}

}  // namespace
}  // namespace moe::server
