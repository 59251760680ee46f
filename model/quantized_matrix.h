// model/quantized_matrix.h
// A weight matrix W [n, k] (rows are output features) resident in a low-bit format as stored:
// each row is ⌈k / block⌉ blocks of its WeightFormat, and an optional 2-D grid of f32 scales (FP8's
// one scale per grid_n × grid_k block). Made by the expert-weight loader from a checkpoint's bytes
// (a copy of this matrix's bytes only), or by quantizing f32 weights at load (--quantize). The
// CPU kernels read rows and dequantize them exactly (experts/cpu/cpu_quantized_product.h).
// Immutable after creation; safe to read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/formats/weight_format.h"

namespace moe::model {

// A 2-D grid of scales: entry [r / rows, c / cols] multiplies W[r, c]; rows, cols > 0.
struct ScaleGrid {
  std::vector<float> scales;  // [⌈n / rows⌉, ⌈k / cols⌉] row-major
  int64_t rows = 0, cols = 0;
};

class QuantizedMatrix {
 public:

  // Copies `bytes` (n rows of RowBytes(format, k) each; `row_stride` bytes apart, 0 = packed)
  // into a matrix of `format`. INVALID_ARGUMENT for non-positive sizes, a k that is not a multiple
  // of the block in a format without ragged rows, or a grid whose shape does not cover [n, k] (or,
  // in a format without ragged rows, whose cols is not a multiple of the block); RESOURCE_EXHAUSTED
  // when it cannot be allocated.
  static absl::StatusOr<QuantizedMatrix> FromBytes(const WeightFormat& format, int64_t n, int64_t k,
                                                   const uint8_t* bytes, int64_t row_stride = 0,
                                                   ScaleGrid grid = {});
  // Quantizes f32 W [n, k] (row-major) with the format's quantizer. INVALID_ARGUMENT if the
  // format has none or k is not a multiple of its block.
  static absl::StatusOr<QuantizedMatrix> Quantize(const WeightFormat& format, const float* w, int64_t n, int64_t k);

  // Bytes of one row of k values in `format` (k a multiple of the block unless ragged).
  static int64_t RowBytes(const WeightFormat& format, int64_t k);

  const WeightFormat& format() const { return *format_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t row_bytes() const { return row_bytes_; }
  const uint8_t* row(int64_t r) const { return data_.get() + r * row_bytes_; }
  const ScaleGrid& grid() const { return grid_; }  // empty scales when the format carries its own
  // Resident bytes: the rows and the scale grid.
  size_t bytes() const { return static_cast<size_t>(n_ * row_bytes_) + grid_.scales.size() * sizeof(float); }

  // out[0..k) = row r of W, exactly (the format's dequantization times the grid's scale).
  void DequantizeRow(int64_t r, float* out) const;

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  QuantizedMatrix() = default;
  absl::Status Allocate();

  const WeightFormat* format_ = nullptr;
  int64_t n_ = 0, k_ = 0, row_bytes_ = 0;
  ScaleGrid grid_;
  std::shared_ptr<uint8_t> data_;  // shared: copies of a matrix share its bytes
};

}  // namespace moe::model
