// model/dtype.h
// The element types moe-serve moves and stores (F32, BF16, F16) and exact conversions between
// them (round to nearest even, NaN and Inf preserved). Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace moe::model {

enum class DType { kF32, kBF16, kF16 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// The safetensors spelling: "F32", "BF16", "F16".
absl::string_view DTypeName(DType dtype);
// Inverse of DTypeName; nullopt for any other spelling.
std::optional<DType> ParseDType(absl::string_view name);

uint16_t F32ToBF16(float value);
float BF16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);
float F16ToF32(uint16_t bits);

// Converts `count` elements stored as `dtype` at `src` into f32 at `dst`.
void ConvertToF32(DType dtype, const void* src, float* dst, size_t count);
// Converts `count` f32 values at `src` into `dtype` at `dst` (rounding to nearest even).
void ConvertFromF32(DType dtype, const float* src, void* dst, size_t count);

}  // namespace moe::model
