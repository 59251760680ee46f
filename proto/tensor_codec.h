// proto/tensor_codec.h
// Conversion between the wire Tensor (moe.v1.Tensor) and model::Tensor: a validated,
// zero-copy view of a received tensor, and encoding of f32 rows into a wire tensor of any dtype.
// Used by the services and the client library. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/dtype.h"
#include "model/tensor.h"
#include "moe/v1/moe.pb.h"

namespace moe::proto {

model::DType FromWireDType(moe::v1::DType dtype);  // REQUIRES: a valid, specified dtype
moe::v1::DType ToWireDType(model::DType dtype);

// A borrowed view of `wire` (valid while `wire` lives). INVALID_ARGUMENT naming `field` for an
// unspecified or unknown dtype, a negative dimension, or data whose size is not
// product(shape)·sizeof(dtype).
absl::StatusOr<model::Tensor> ViewTensor(const moe::v1::Tensor& wire, absl::string_view field);

// Fills `wire` with `values` ([shape] f32) converted to `dtype`.
void EncodeF32(absl::Span<const float> values, const std::vector<int64_t>& shape,
               model::DType dtype, moe::v1::Tensor* wire);
// Fills `wire` with a copy of `tensor` (same dtype).
void EncodeTensor(const model::Tensor& tensor, moe::v1::Tensor* wire);

}  // namespace moe::proto
