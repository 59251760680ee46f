// experts/cpu/cpu_matmul.h
// oneDNN matmuls of activations by PackedWeights (bf16×bf16 or f32×f32, f32 out). A primitive is
// created once per (weight shape and dtype, row bucket) and reused: rows are padded up to the
// bucket, since a primitive with a runtime row count loses the AMX kernel. (No post-ops: a fused
// swish costs ~40 % of the product on oneDNN 2.6; cpu_swiglu.h does silu⊙up in one pass.)
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
#include "experts/cpu/cpu_packed_weight.h"
#include "model/dtype.h"

namespace moe::experts {

class MatmulCache {
 public:
  // Largest row bucket; callers split larger groups into chunks of at most this many rows.
  static constexpr int64_t kMaxRows = 512;
  // The row count a primitive is built for: `rows` rounded up to 16 (AMX's tile height) up to 256
  // rows, to 32 past that. Measured on oneDNN 2.6 with AMX (docs/BENCHMARKS.md): past 256 rows
  // the odd multiples of 16 fall off the rate (272 rows: 19 µs a row, 288: 13.6; 304: 15.8, 320:
  // 14.1), below 256 they do not. REQUIRES: 0 < rows <= kMaxRows.
  static int64_t Bucket(int64_t rows);

  MatmulCache();

  // y = x·Wᵀ, f32 [rows, w.n()] dense; x is w's dtype, dense [rows, w.k()] (oneDNN 2.6's brgemm
  // takes no leading dimension past K). `rows` must be a Bucket value. INTERNAL if oneDNN refuses.
  absl::Status Run(const PackedWeight& w, const void* x, int64_t rows, float* y);

  // The implementation oneDNN chose for the last primitive created, e.g.
  // "brg:avx512_core_amx_bf16"; empty before the first.
  const std::string& last_impl() const { return last_impl_; }
  size_t primitives() const { return cache_.size(); }

 private:
  using Key = std::tuple<int64_t, int64_t, int, int, int64_t>;
  struct Entry {
    dnnl::matmul primitive;
    dnnl::memory src, weights, dst;  // handles re-pointed per call: no allocation
    std::unordered_map<int, dnnl::memory> args;
  };
  dnnl::engine engine_;
  dnnl::stream stream_;
  absl::flat_hash_map<Key, std::unique_ptr<Entry>> cache_;
  std::string last_impl_;
};

}  // namespace moe::experts
