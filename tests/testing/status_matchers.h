// tests/testing/status_matchers.h
// GoogleTest helpers for absl::Status, which Debian's Abseil does not ship: ASSERT_OK/EXPECT_OK,
// ASSERT_OK_AND_ASSIGN, and the StatusIs(code, substring) matcher. Test-only.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P2(StatusIs, code, substring,
           std::string("has code ") + absl::StatusCodeToString(code) + " and a message containing '" +
               substring + "'") {
  const absl::Status& s = ::moe::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code && std::string(s.message()).find(substring) != std::string::npos;
}

}  // namespace moe::testing

#define EXPECT_OK(expr) EXPECT_TRUE((::moe::testing::GetStatus(expr)).ok()) << (::moe::testing::GetStatus(expr))
#define ASSERT_OK(expr) ASSERT_TRUE((::moe::testing::GetStatus(expr)).ok()) << (::moe::testing::GetStatus(expr))

#define MOE_TEST_CONCAT_INNER(a, b) a##b
#define MOE_TEST_CONCAT(a, b) MOE_TEST_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(MOE_TEST_CONCAT(moe_test_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  ASSERT_TRUE(statusor.ok()) << statusor.status();     \
  lhs = std::move(statusor).value()
