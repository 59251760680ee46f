// experts/cpu/cpu_packed_weight.h
// One weight matrix of a CPU expert, packed once at load into the layout both the oneDNN
// matmul and our small-row kernels read: bf16 as oneDNN's VNNI-blocked BA16a64b2a (64 output
// columns per tile, K in pairs); f32 as BA16a64b where oneDNN's brgemm takes it (AVX-512) or
// plain K×N rows otherwise (AVX2's jit gemm). Built by the CPU backend; immutable afterwards and
// safe to read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "dnnl.hpp"
#include "model/dtype.h"

namespace moe::experts {

enum class PackedLayout {
  kBlocked,  // tiles of 64 columns, each K rows deep (bf16: k pairs interleaved)
  kPlainKN,  // f32 only: row k holds columns 0..n_pad-1
  kPlainNK,  // f32 only: W's rows as they are, row j holds W[j, 0..k) (dequantized weights)
};

class PackedWeight {
 public:
  static constexpr int64_t kTile = 64;  // output columns per tile

  // Packs W, row-major [n, k] of `src_dtype` (F32, BF16 or F16), into `dtype` (F32 or BF16) in
  // `layout`. The padding (n to 64; k to oneDNN's block, 32 for bf16, 16 for f32) is zero. INVALID_ARGUMENT for bf16 in kPlainKN or
  // non-positive sizes.
  static absl::StatusOr<PackedWeight> Pack(const void* src, model::DType src_dtype, int64_t n, int64_t k, model::DType dtype,
                                           PackedLayout layout);
  // An f32 weight of [n, k] in `layout` (kPlainKN or kPlainNK) whose values are left zero, to be
  // written through mutable_data(): where weights are widened to f32 before a product.
  // INVALID_ARGUMENT for non-positive sizes or a blocked layout; RESOURCE_EXHAUSTED if it cannot
  // be allocated.
  static absl::StatusOr<PackedWeight> PlainF32(int64_t n, int64_t k, PackedLayout layout);

  // Writes this bf16 kBlocked weight's values, exactly, into `dst` (PlainF32(n(), k(), kPlainKN)),
  // on `threads` OpenMP threads: the bf16 weights of a CPU without bf16 instructions go through
  // oneDNN's f32 GEMM this way, a product at a time.
  void WidenInto(PackedWeight& dst, int threads) const;

  model::DType dtype() const { return dtype_; }
  PackedLayout layout() const { return layout_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t n_pad() const { return n_pad_; }
  int64_t k_pad() const { return k_pad_; }
  size_t bytes() const { return bytes_; }
  const void* data() const { return data_.get(); }
  void* mutable_data() { return data_.get(); }
  // oneDNN's description of this matrix as the K×N weights of a matmul.
  dnnl::memory::desc desc() const;

  // Elements from the start of tile `t` to the next (f32 and bf16 alike).
  int64_t tile_stride() const { return layout_ == PackedLayout::kBlocked ? k_pad_ * kTile : kTile; }
  // Elements from row k to row k+1 inside a tile (f32); bf16 steps by pairs of rows of 128.
  int64_t row_stride() const { return layout_ == PackedLayout::kBlocked ? kTile : n_pad_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  // Allocates bytes_ (zeroed; 2 MiB pages from 1 MiB up, where Linux allows).
  absl::Status Allocate();

  model::DType dtype_ = model::DType::kF32;
  PackedLayout layout_ = PackedLayout::kBlocked;
  int64_t n_ = 0, k_ = 0, n_pad_ = 0, k_pad_ = 0;
  size_t bytes_ = 0;
  std::unique_ptr<void, Free> data_;
};

}  // namespace moe::experts
