// model/tensor.h
// A small row-major tensor: dtype, shape and storage that is either owned (allocated here) or
// borrowed (a view into memory kept alive by a holder, e.g. a safetensors mmap). Copies share
// storage; Clone() makes a deep copy. Not internally synchronised: share const tensors freely,
// write one from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/dtype.h"

namespace moe::model {

class Tensor {
 public:
  Tensor() = default;

  // An owned tensor of `shape`, zero-filled. REQUIRES: every dimension >= 0.
  static Tensor Zeros(DType dtype, std::vector<int64_t> shape);
  // An owned f32 tensor holding a copy of `values`. REQUIRES: values.size() == product(shape).
  static Tensor FromF32(absl::Span<const float> values, std::vector<int64_t> shape);
  // A read-only view of `data`, kept valid by `holder` (which may be null when the caller
  // guarantees the lifetime).
  static Tensor Borrow(DType dtype, std::vector<int64_t> shape, const void* data,
                       std::shared_ptr<const void> holder);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t num_elements() const;
  size_t num_bytes() const { return static_cast<size_t>(num_elements()) * DTypeSize(dtype_); }
  bool is_owned() const { return mutable_data_ != nullptr; }

  const void* raw_data() const { return data_; }
  // REQUIRES: is_owned().
  void* mutable_raw_data() { return mutable_data_; }
  // REQUIRES: dtype() == F32.
  absl::Span<const float> f32() const {
    return {static_cast<const float*>(data_), static_cast<size_t>(num_elements())};
  }
  // REQUIRES: dtype() == F32 and is_owned().
  absl::Span<float> mutable_f32() {
    return {static_cast<float*>(mutable_data_), static_cast<size_t>(num_elements())};
  }

  // A deep, owned copy with the same dtype.
  Tensor Clone() const;
  // An owned f32 copy (converted from BF16/F16 exactly).
  Tensor ToF32() const;
  // An owned copy converted to `dtype` (rounding to nearest even).
  Tensor ConvertTo(DType dtype) const;

  // Of a rank-2 tensor [R, C]: rows [begin, begin + count), a [count, C] view sharing its storage.
  Tensor Rows(int64_t begin, int64_t count) const;
  // Of a rank-3 tensor [N, R, C]: rows [row_begin, row_begin + rows) of matrix `index`, a
  // [rows, C] view sharing this tensor's storage (no copy: a stacked expert tensor's slice).
  // REQUIRES: rank 3, index < N, row_begin + rows <= R.
  Tensor MatrixRows(int64_t index, int64_t row_begin, int64_t rows) const;
  // Of a rank-3 tensor [N, R, C]: columns [col_begin, col_begin + cols) of matrix `index`,
  // transposed into an owned [cols, R] tensor of the same dtype (a transposed stacked layout).
  // REQUIRES: rank 3, index < N, col_begin + cols <= C.
  // With `col_step` > 1 the columns col_begin, col_begin + step, ... (interleaved gate/up).
  Tensor MatrixColumnsTransposed(int64_t index, int64_t col_begin, int64_t cols, int64_t col_step = 1) const;

  // "BF16[8, 4096]" for messages.
  std::string DebugString() const;

 private:
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
  const void* data_ = nullptr;
  void* mutable_data_ = nullptr;
  std::shared_ptr<const void> holder_;
};

// "[8, 4096]".
std::string ShapeString(absl::Span<const int64_t> shape);

}  // namespace moe::model
