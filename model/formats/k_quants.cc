// model/formats/k_quants.cc
#include "model/formats/k_quants.h"

#include <algorithm>
#include <cmath>

namespace moe::model::kquants {

void PackScaleMin(int j, int scale, int min, uint8_t* packed) {
  if (j < 4) {
    packed[j] = static_cast<uint8_t>((packed[j] & 0xc0) | scale);
    packed[j + 4] = static_cast<uint8_t>((packed[j + 4] & 0xc0) | min);
  } else {
    packed[j + 4] = static_cast<uint8_t>((scale & 0x0f) | ((min & 0x0f) << 4));
    packed[j - 4] = static_cast<uint8_t>(packed[j - 4] | ((scale >> 4) << 6));
    packed[j] = static_cast<uint8_t>(packed[j] | ((min >> 4) << 6));
  }
}

int NearestInt(float v) { return static_cast<int>(std::nearbyint(v)); }

namespace {

float WeightedError(const float* x, const float* w, int n, const uint8_t* codes, float scale,
                    float offset) {
  float error = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = scale * codes[i] + offset - x[i];
    error += w[i] * diff * diff;
  }
  return error;
}

}  // namespace

float FitScaleMin(const float* x, const float* w, int n, int nmax, uint8_t* codes, float* min_out) {
  float lo = x[0], hi = x[0], sum_w = 0, sum_x = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  lo = std::min(lo, 0.0f);  // the min is subtracted: never a positive offset
  if (hi <= lo) {
    std::fill(codes, codes + n, 0);
    *min_out = -lo;
    return 0.0f;
  }
  const auto code_of = [&](float inv, float v) {
    return static_cast<uint8_t>(std::clamp(NearestInt(inv * (v - lo)), 0, nmax));
  };
  float scale = (hi - lo) / nmax, offset = lo;
  for (int i = 0; i < n; ++i) codes[i] = code_of(1.0f / scale, x[i]);
  float best = WeightedError(x, w, n, codes, scale, offset);
  uint8_t trial[256];
  for (int step = 0; step <= 20;
       ++step) {  // candidate inverse scales (nmax − 1 + 0.1·step) / range
    const float inv = (nmax - 1.0f + 0.1f * step) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      trial[i] = code_of(inv, x[i]);
      sum_l += w[i] * trial[i];
      sum_l2 += w[i] * trial[i] * trial[i];
      sum_xl += w[i] * trial[i] * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    // Least squares for (s, o) in x ≈ s·L + o, with o ≤ 0.
    float s = (sum_w * sum_xl - sum_x * sum_l) / det;
    float o = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (o > 0) {
      o = 0;
      s = sum_xl / sum_l2;
    }
    const float error = WeightedError(x, w, n, trial, s, o);
    if (error < best) {
      best = error;
      scale = s;
      offset = o;
      std::copy(trial, trial + n, codes);
    }
  }
  *min_out = -offset;
  return scale;
}

float FitSymmetric(const float* x, int n, int nmax) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0.0f;
  float best_scale = 0, best_gain = -1;
  for (int step = -9; step <= 9; ++step) {
    const float inv = -(nmax + 0.1f * step) / max;
    float sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(NearestInt(inv * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    // Minimising Σ w (x − s·l)² over s gives s = Σwxl / Σwl² and removes (Σwxl)² / Σwl².
    if (sum_l2 > 0 && sum_lx * sum_lx / sum_l2 > best_gain) {
      best_gain = sum_lx * sum_lx / sum_l2;
      best_scale = sum_lx / sum_l2;
    }
  }
  return best_scale;
}

}  // namespace moe::model::kquants
