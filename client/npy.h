// client/npy.h
// Reads a 2-D NumPy .npy file (format 1.0-3.0, little-endian float32 '<f4' or float16 '<f2',
// C order) into a tensor, and writes float32 ones, for moe-client --npy / --save_output.
// Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace moe::client {

// INVALID_ARGUMENT naming the file for anything but a C-ordered 2-D <f4/<f2 array;
// NOT_FOUND if the file cannot be read.
absl::StatusOr<model::Tensor> ReadNpy(const std::string& path);

// Writes a 2-D tensor as a float32 .npy file (format 1.0). INTERNAL if writing fails.
absl::Status WriteNpy(const std::string& path, const model::Tensor& tensor);

}  // namespace moe::client
