// base/byte_size.h
// Byte sizes as people write them in flags: "64GiB", "512MiB", "1.5GiB", "2GB", "4096" (bytes).
// Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) of 1000;
// a unit letter alone (K, M, G, T) is binary. Used by moe-expert's --memory_budget and
// moe-placement's --hosts. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::base {

// INVALID_ARGUMENT naming `text` for anything else (a negative or non-finite number, an unknown
// unit, more than 2^63 bytes).
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// "1.50 GiB", "512.0 MiB", "900 B": for logs and tables.
std::string FormatByteSize(int64_t bytes);

}  // namespace moe::base
