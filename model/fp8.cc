// model/fp8.cc
#include "model/fp8.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace moe::model {
namespace {

// Row i of `out` (BF16, rounded once, or F32) from f32 values.
void StoreRow(const std::vector<float>& row, int64_t i, Tensor& out) {
  const int64_t k = static_cast<int64_t>(row.size());
  if (out.dtype() == DType::kBF16) {
    auto* dst = static_cast<uint16_t*>(out.mutable_raw_data()) + i * k;
    for (int64_t j = 0; j < k; ++j) dst[j] = F32ToBF16(row[j]);
  } else {
    std::copy(row.begin(), row.end(), out.mutable_f32().begin() + i * k);
  }
}

}  // namespace

float E4m3ToF32(uint8_t code) {
  const int sign = code >> 7, exponent = (code >> 3) & 0xf, mantissa = code & 0x7;
  float value;
  if (exponent == 0xf && mantissa == 0x7) {
    value = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);  // subnormal
  } else {
    value = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  }
  return sign ? -value : value;
}

uint8_t F32ToE4m3(float value) {
  if (std::isnan(value)) return 0x7f;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float a = std::min(std::fabs(value), 448.0f);
  // Codes 0..0x7e are ascending in value: the nearest by binary search, ties to the even code.
  int lo = 0, hi = 0x7e;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (E4m3ToF32(static_cast<uint8_t>(mid)) <= a) lo = mid; else hi = mid - 1;
  }
  int code = lo;
  if (code < 0x7e) {
    const float below = E4m3ToF32(static_cast<uint8_t>(code)), above = E4m3ToF32(static_cast<uint8_t>(code + 1));
    if (a - below > above - a || (a - below == above - a && code % 2 == 1)) code += 1;
  }
  return static_cast<uint8_t>(sign | code);
}

Tensor QuantizeFp8Blocks(const float* w, int64_t n, int64_t k, int block_n, int block_k, std::vector<uint8_t>* codes) {
  const int64_t bn = (n + block_n - 1) / block_n, bk = (k + block_k - 1) / block_k;
  Tensor scales = Tensor::Zeros(DType::kF32, {bn, bk});
  codes->resize(static_cast<size_t>(n * k));
  for (int64_t bi = 0; bi < bn; ++bi) {
    for (int64_t bj = 0; bj < bk; ++bj) {
      float amax = 0.0f;
      for (int64_t i = bi * block_n; i < std::min(n, (bi + 1) * block_n); ++i)
        for (int64_t j = bj * block_k; j < std::min(k, (bj + 1) * block_k); ++j) amax = std::max(amax, std::fabs(w[i * k + j]));
      const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
      scales.mutable_f32()[bi * bk + bj] = scale;
      for (int64_t i = bi * block_n; i < std::min(n, (bi + 1) * block_n); ++i)
        for (int64_t j = bj * block_k; j < std::min(k, (bj + 1) * block_k); ++j) (*codes)[i * k + j] = F32ToE4m3(w[i * k + j] / scale);
    }
  }
  return scales;
}

absl::StatusOr<Tensor> DequantizeFp8Blocks(const std::string& name, const uint8_t* q, int64_t n, int64_t k,
                                           const Tensor& scales, int block_n, int block_k, DType dtype) {
  const int64_t bn = (n + block_n - 1) / block_n, bk = (k + block_k - 1) / block_k;
  if (scales.dtype() != DType::kF32 || scales.shape() != std::vector<int64_t>{bn, bk}) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "_scale_inv' is ", scales.DebugString(),
                                                   "; expected F32[", bn, ", ", bk, "] for FP8 blocks of ",
                                                   block_n, "x", block_k, " of a [", n, ", ", k, "] weight"));
  }
  float table[256];
  for (int c = 0; c < 256; ++c) table[c] = E4m3ToF32(static_cast<uint8_t>(c));
  Tensor out = Tensor::Zeros(dtype, {n, k});
  const float* s = scales.f32().data();
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const float* block_scales = s + (i / block_n) * bk;
    for (int64_t j = 0; j < k; ++j) row[j] = table[q[i * k + j]] * block_scales[j / block_k];
    StoreRow(row, i, out);
  }
  return out;
}

void QuantizeMxfp4Expert(const float* w, int64_t n, int64_t k, std::vector<uint8_t>* blocks,
                         std::vector<uint8_t>* scales) {
  static constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t g = 0; g < k / 32; ++g) {
      const float* v = w + i * k + g * 32;
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
      const int exponent = amax > 0.0f ? std::clamp(static_cast<int>(std::ceil(std::log2(amax / 6.0f))), -127, 127) : -127;
      scales->push_back(static_cast<uint8_t>(exponent + 127));
      uint8_t codes[32];
      for (int j = 0; j < 32; ++j) {
        const float a = std::fabs(std::ldexp(v[j], -exponent));
        int best = 0;
        for (int c = 1; c < 8; ++c) {
          if (std::fabs(kMagnitudes[c] - a) < std::fabs(kMagnitudes[best] - a)) best = c;
        }
        codes[j] = static_cast<uint8_t>(best | (std::signbit(v[j]) ? 8 : 0));
      }
      for (int j = 0; j < 16; ++j) blocks->push_back(static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4)));
    }
  }
}

Tensor DequantizeMxfp4Expert(const uint8_t* blocks, const uint8_t* scales, int64_t index, int64_t n, int64_t k,
                             DType dtype) {
  static constexpr float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                      -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  const int64_t groups = k / 32;
  const uint8_t* b = blocks + index * n * groups * 16;
  const uint8_t* s = scales + index * n * groups;
  Tensor out = Tensor::Zeros(dtype, {n, k});
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t g = 0; g < groups; ++g) {
      const int exponent = static_cast<int>(s[i * groups + g]) - 127;
      for (int64_t j = 0; j < 16; ++j) {
        const uint8_t byte = b[(i * groups + g) * 16 + j];
        row[g * 32 + 2 * j] = std::ldexp(kE2m1[byte & 0x0f], exponent);
        row[g * 32 + 2 * j + 1] = std::ldexp(kE2m1[byte >> 4], exponent);
      }
    }
    StoreRow(row, i, out);
  }
  return out;
}

}  // namespace moe::model
