// base/status_macros.h
// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status, which Debian's Abseil (20220623) lacks.
// Used by every module of moe-serve; header-only, no state.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOE_STATUS_CONCAT_INNER(a, b) a##b
#define MOE_STATUS_CONCAT(a, b) MOE_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function with the status of `expr` if it is not OK.
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status moe_status_ = (expr);            \
    if (!moe_status_.ok()) return moe_status_;      \
  } while (0)

// ASSIGN_OR_RETURN(auto x, StatusOrExpr()): assigns the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL(MOE_STATUS_CONCAT(moe_statusor_, __LINE__), lhs, expr)
#define MOE_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()
