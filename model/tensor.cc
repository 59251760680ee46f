// model/tensor.cc
#include "model/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moe::model {
namespace {

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

Tensor Tensor::Zeros(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  const size_t bytes = t.num_bytes();
  // 64-byte alignment suits BLAS and vector loads; +1 keeps empty tensors non-null.
  std::shared_ptr<uint8_t[]> buffer(new (std::align_val_t{64}) uint8_t[bytes + 1](),
                                    [](uint8_t* p) { ::operator delete[](p, std::align_val_t{64}); });
  t.mutable_data_ = buffer.get();
  t.data_ = buffer.get();
  t.holder_ = std::shared_ptr<const void>(buffer, buffer.get());
  return t;
}

Tensor Tensor::FromF32(absl::Span<const float> values, std::vector<int64_t> shape) {
  Tensor t = Zeros(DType::kF32, std::move(shape));
  std::memcpy(t.mutable_data_, values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::Borrow(DType dtype, std::vector<int64_t> shape, const void* data,
                      std::shared_ptr<const void> holder) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.holder_ = std::move(holder);
  return t;
}

int64_t Tensor::num_elements() const { return Product(shape_); }

Tensor Tensor::Clone() const {
  Tensor t = Zeros(dtype_, shape_);
  std::memcpy(t.mutable_data_, data_, num_bytes());
  return t;
}

Tensor Tensor::MatrixRows(int64_t index, int64_t row_begin, int64_t rows) const {
  const size_t element = DTypeSize(dtype_);
  const int64_t r = shape_[1], c = shape_[2];
  const auto* base = static_cast<const uint8_t*>(data_) + ((index * r + row_begin) * c) * element;
  return Borrow(dtype_, {rows, c}, base, holder_);
}

Tensor Tensor::Rows(int64_t begin, int64_t count) const {
  const int64_t c = shape_[1];
  return Borrow(dtype_, {count, c}, static_cast<const uint8_t*>(data_) + begin * c * DTypeSize(dtype_), holder_);
}

Tensor Tensor::MatrixColumnsTransposed(int64_t index, int64_t col_begin, int64_t cols, int64_t col_step) const {
  const size_t element = DTypeSize(dtype_);
  const int64_t r = shape_[1], c = shape_[2];
  Tensor t = Zeros(dtype_, {cols, r});
  const auto* src = static_cast<const uint8_t*>(data_) + index * r * c * element;
  auto* dst = static_cast<uint8_t*>(t.mutable_data_);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      std::memcpy(dst + (j * r + i) * element, src + (i * c + col_begin + j * col_step) * element, element);
    }
  }
  return t;
}

Tensor Tensor::ToF32() const { return ConvertTo(DType::kF32); }

Tensor Tensor::ConvertTo(DType dtype) const {
  if (dtype == dtype_) return Clone();
  Tensor t = Zeros(dtype, shape_);
  const size_t n = static_cast<size_t>(num_elements());
  if (dtype == DType::kF32) {
    ConvertToF32(dtype_, data_, static_cast<float*>(t.mutable_data_), n);
  } else if (dtype_ == DType::kF32) {
    ConvertFromF32(dtype, static_cast<const float*>(data_), t.mutable_data_, n);
  } else {
    std::vector<float> tmp(n);
    ConvertToF32(dtype_, data_, tmp.data(), n);
    ConvertFromF32(dtype, tmp.data(), t.mutable_data_, n);
  }
  return t;
}

std::string Tensor::DebugString() const {
  return absl::StrCat(DTypeName(dtype_), ShapeString(shape_));
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace moe::model
