// model/formats/k_quants.h
// What llama.cpp's K-quant formats (q4_k.cc, q5_k.cc, q6_k.cc) share: 256 values a super-block,
// the 6-bit scales and mins of Q4_K/Q5_K packed into 12 bytes, and the quantizers' fits (a scale
// and a min per 32 values by weighted least squares over candidate scales; a signed scale per 16).
// Internal to model/formats; pure functions, thread-safe.
#pragma once

#include <cstdint>

namespace moe::model::kquants {

constexpr int kSuperBlock = 256;

// Sub-block j (< 8) of a Q4_K/Q5_K super-block: its 6-bit scale and min from the 12 bytes.
inline void UnpackScaleMin(int j, const uint8_t* packed, int* scale, int* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// The inverse: writes scale and min (each < 64) of sub-block j into the 12 bytes (zeroed first).
void PackScaleMin(int j, int scale, int min, uint8_t* packed);

// Rounds to the nearest integer, ties to even (as the quantizers' nearest_int does).
int NearestInt(float v);

// Codes L[i] in [0, nmax] and (scale, min ≥ 0) with x ≈ scale·L − min, chosen to minimise the
// error weighted by w, over candidate scales around (max − min) / nmax. Returns scale.
float FitScaleMin(const float* x, const float* w, int n, int nmax, uint8_t* codes, float* min);

// A signed scale s with x ≈ s·L for L in [−nmax, nmax − 1], weighted by x², searched around
// −nmax / (the value of largest magnitude). Returns s (0 for an all-zero x).
float FitSymmetric(const float* x, int n, int nmax);

}  // namespace moe::model::kquants
