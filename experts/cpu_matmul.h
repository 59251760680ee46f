// experts/cpu_matmul.h
// oneDNN matmuls of activations by PackedWeights, with the SwiGLU steps fused as post-ops
// (silu on the gate product; the up product multiplied by it and written as bf16 or f32). A
// primitive is created once per (weight shape and dtype, post-op, row bucket) and reused: rows
// are padded up to the bucket, since a primitive with a runtime row count loses the AMX kernel.
// Owned by one CPU backend and called under its lock: not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "dnnl.hpp"
#include "experts/cpu_packed_weight.h"
#include "experts/dtype.h"

namespace moe::experts {

class MatmulCache {
 public:
  enum class PostOp { kNone = 0, kSilu = 1, kMulBy = 2 };
  // Largest row bucket; callers split larger groups into chunks of at most this many rows.
  static constexpr int64_t kMaxRows = 1024;
  // The row count a primitive is built for: `rows` rounded up to 16 (AMX's tile height), or to
  // 64 past 256 rows. REQUIRES: 0 < rows <= kMaxRows.
  static int64_t Bucket(int64_t rows);

  MatmulCache();

  // y = x·Wᵀ [rows, w.n()], then the post-op: kSilu y = silu(y); kMulBy y = y ⊙ mul (f32, ld
  // `ldm`). x is w's dtype with leading dimension `ldx`, y is `y_dtype` with `ldy`; every
  // buffer has `rows` rows, which must be a Bucket value. INTERNAL if oneDNN refuses.
  absl::Status Run(const PackedWeight& w, PostOp op, const void* x, int64_t ldx, int64_t rows, void* y,
                   DType y_dtype, int64_t ldy, const float* mul = nullptr, int64_t ldm = 0);

  // The implementation oneDNN chose for the last primitive created, e.g.
  // "brg:avx512_core_amx_bf16"; empty before the first.
  const std::string& last_impl() const { return last_impl_; }
  size_t primitives() const { return cache_.size(); }

 private:
  using Key = std::tuple<int64_t, int64_t, int, int, int64_t, int64_t, int64_t, int, int64_t>;
  struct Entry {
    dnnl::matmul primitive;
    dnnl::memory src, weights, dst, mul;  // handles re-pointed per call: no allocation
    std::unordered_map<int, dnnl::memory> args;
  };
  dnnl::engine engine_;
  dnnl::stream stream_;
  absl::flat_hash_map<Key, std::unique_ptr<Entry>> cache_;
  std::string last_impl_;
};

}  // namespace moe::experts
