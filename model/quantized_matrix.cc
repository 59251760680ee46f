// model/quantized_matrix.cc
#include "model/quantized_matrix.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace moe::model {

int64_t QuantizedMatrix::RowBytes(const WeightFormat& format, int64_t k) {
  const int64_t full = k / format.block, rest = k % format.block;
  return full * format.block_bytes + rest * format.block_bytes / format.block;
}

absl::Status QuantizedMatrix::Allocate() {
  const size_t size = (static_cast<size_t>(n_ * row_bytes_) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size);
  if (p == nullptr) return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", size, " bytes"));
  data_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), Free());
  return absl::OkStatus();
}

absl::StatusOr<QuantizedMatrix> QuantizedMatrix::FromBytes(const WeightFormat& format, int64_t n, int64_t k,
                                                           const uint8_t* bytes, int64_t row_stride,
                                                           ScaleGrid grid) {
  if (n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("a ", format.name, " matrix of [", n, ", ", k, "]"));
  }
  if (!format.ragged && k % format.block != 0) {
    return absl::InvalidArgumentError(absl::StrCat(format.name, " needs rows of a multiple of ", format.block,
                                                   " values, not ", k));
  }
  if (!grid.scales.empty()) {
    if (grid.rows <= 0 || grid.cols <= 0 || (!format.ragged && grid.cols % format.block != 0) ||
        static_cast<int64_t>(grid.scales.size()) != ((n + grid.rows - 1) / grid.rows) * ((k + grid.cols - 1) / grid.cols)) {
      return absl::InvalidArgumentError(absl::StrCat("a scale grid of ", grid.scales.size(), " entries in blocks of ",
                                                     grid.rows, "x", grid.cols, " does not cover [", n, ", ", k,
                                                     "] in blocks of ", format.block));
    }
  }
  QuantizedMatrix m;
  m.format_ = &format;
  m.n_ = n;
  m.k_ = k;
  m.row_bytes_ = RowBytes(format, k);
  m.grid_ = std::move(grid);
  RETURN_IF_ERROR(m.Allocate());
  const int64_t stride = row_stride > 0 ? row_stride : m.row_bytes_;
  for (int64_t r = 0; r < n; ++r) std::memcpy(m.data_.get() + r * m.row_bytes_, bytes + r * stride, m.row_bytes_);
  return m;
}

absl::StatusOr<QuantizedMatrix> QuantizedMatrix::Quantize(const WeightFormat& format, const float* w, int64_t n,
                                                          int64_t k) {
  if (format.quantize == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("weights cannot be quantized to ", format.name,
                                                   " (a format only read from checkpoints)"));
  }
  if (n <= 0 || k <= 0 || k % format.block != 0) {
    return absl::InvalidArgumentError(absl::StrCat(format.name, " needs rows of a multiple of ", format.block,
                                                   " values; the weight is [", n, ", ", k, "]"));
  }
  QuantizedMatrix m;
  m.format_ = &format;
  m.n_ = n;
  m.k_ = k;
  m.row_bytes_ = RowBytes(format, k);
  RETURN_IF_ERROR(m.Allocate());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < k / format.block; ++b) {
      format.quantize(w + r * k + b * format.block, m.data_.get() + r * m.row_bytes_ + b * format.block_bytes);
    }
  }
  return m;
}

void QuantizedMatrix::DequantizeRow(int64_t r, float* out) const {
  const uint8_t* p = row(r);
  const int64_t grid_k = grid_.scales.empty() ? 0 : (k_ + grid_.cols - 1) / grid_.cols;
  const float* grid_row = grid_.scales.empty() ? nullptr : grid_.scales.data() + (r / grid_.rows) * grid_k;
  // Whole blocks; a format of whole bytes a value (fp8) in spans of one grid scale (or the row).
  const int64_t span = !format_->ragged ? format_->block : grid_row != nullptr ? grid_.cols : k_;
  for (int64_t c = 0; c < k_; c += span) {
    const int count = static_cast<int>(std::min<int64_t>(span, k_ - c));
    const float scale = grid_row == nullptr ? 1.0f : grid_row[c / grid_.cols];
    format_->dequantize(p, count, scale, out + c);
    p += count / format_->block * format_->block_bytes + count % format_->block * format_->block_bytes / format_->block;
  }
}

}  // namespace moe::model
