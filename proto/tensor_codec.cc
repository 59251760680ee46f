// proto/tensor_codec.cc
#include "proto/tensor_codec.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace moe::proto {

model::DType FromWireDType(moe::v1::DType dtype) {
  switch (dtype) {
    case moe::v1::DTYPE_BF16:
      return model::DType::kBF16;
    case moe::v1::DTYPE_F16:
      return model::DType::kF16;
    default:
      return model::DType::kF32;
  }
}

moe::v1::DType ToWireDType(model::DType dtype) {
  switch (dtype) {
    case model::DType::kBF16:
      return moe::v1::DTYPE_BF16;
    case model::DType::kF16:
      return moe::v1::DTYPE_F16;
    case model::DType::kF32:
      return moe::v1::DTYPE_F32;
  }
  return moe::v1::DTYPE_F32;
}

absl::StatusOr<model::Tensor> ViewTensor(const moe::v1::Tensor& wire, absl::string_view field) {
  if (wire.dtype() != moe::v1::DTYPE_F32 && wire.dtype() != moe::v1::DTYPE_BF16 &&
      wire.dtype() != moe::v1::DTYPE_F16) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".dtype is ", wire.dtype(),
                                                   "; expected DTYPE_F32, DTYPE_BF16 or DTYPE_F16"));
  }
  const model::DType dtype = FromWireDType(wire.dtype());
  std::vector<int64_t> shape(wire.shape().begin(), wire.shape().end());
  uint64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".shape[", i, "] is ", shape[i], "; expected a non-negative size"));
    }
    if (shape[i] != 0 && count > std::numeric_limits<uint32_t>::max() / uint64_t(shape[i])) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".shape ", model::ShapeString(shape),
                                                     " is too large"));
    }
    count *= uint64_t(shape[i]);
  }
  const uint64_t expected = count * model::DTypeSize(dtype);
  if (wire.data().size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".data has ", wire.data().size(), " bytes; expected ", expected, " for ",
        model::DTypeName(dtype), model::ShapeString(shape)));
  }
  return model::Tensor::Borrow(dtype, std::move(shape), wire.data().data(), nullptr);
}

void EncodeF32(absl::Span<const float> values, const std::vector<int64_t>& shape,
               model::DType dtype, moe::v1::Tensor* wire) {
  wire->set_dtype(ToWireDType(dtype));
  wire->mutable_shape()->Assign(shape.begin(), shape.end());
  std::string* data = wire->mutable_data();
  data->resize(values.size() * model::DTypeSize(dtype));
  model::ConvertFromF32(dtype, values.data(), data->data(), values.size());
}

void EncodeTensor(const model::Tensor& tensor, moe::v1::Tensor* wire) {
  wire->set_dtype(ToWireDType(tensor.dtype()));
  wire->mutable_shape()->Assign(tensor.shape().begin(), tensor.shape().end());
  wire->set_data(tensor.raw_data(), tensor.num_bytes());
}

}  // namespace moe::proto
