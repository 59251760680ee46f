// experts/cpu/cpu_swiglu.cc
#include "experts/cpu/cpu_swiglu.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "experts/cpu/cpu_small_rows.h"

// GCC 12 warns inside its own intrinsics headers (undefined vector values).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace moe::experts {
namespace {

// exp(x) = 2^n · e^r, n = round(x·log2 e), r = x − n·ln 2 in two parts; e^r by Cephes' expf
// polynomial. Inputs are clamped to ±88.376 (e^x stays finite; silu needs no more range).
constexpr float kMaxX = 88.3762626647949f;
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

float SiluScalar(float g) { return g / (1.0f + std::exp(-g)); }

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 Exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-kMaxX)), _mm512_set1_ps(kMaxX));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  const __m512 e = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(e, n);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void RowAvx512(const float* g, const float* u, int64_t inter,
                                                                   float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= inter; i += 16) {
    const __m512 gv = _mm512_loadu_ps(g + i);
    const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, Exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(u + i)));
  }
  if (i < inter) {
    const __mmask16 m = static_cast<__mmask16>((1u << (inter - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, Exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

__attribute__((target("avx2,fma"))) inline __m256 Exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-kMaxX)), _mm256_set1_ps(kMaxX));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  const __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-128, 128): two factors, so that n = -128 (x near -88.4) does not underflow the
  // exponent field.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(e, s1), s2);
}

__attribute__((target("avx2,fma"))) void RowAvx2(const float* g, const float* u, int64_t inter, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= inter; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, Exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
  for (; i < inter; ++i) out[i] = SiluScalar(g[i]) * u[i];
}

void RowScalar(const float* g, const float* u, int64_t inter, float* out) {
  for (int64_t i = 0; i < inter; ++i) out[i] = SiluScalar(g[i]) * u[i];
}

// With biases and/or gpt-oss's clamped variant (alpha > 0; see GluParams).
float GluScalar(float g, float u, float alpha, float limit) {
  if (alpha <= 0.0f) return SiluScalar(g) * u;
  g = std::min(g, limit);
  u = std::min(std::max(u, -limit), limit);
  return (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
}

void GluRowScalar(const float* g, const float* u, const float* gb, const float* ub, float alpha, float limit,
                  int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = GluScalar(g[i] + (gb ? gb[i] : 0.0f), u[i] + (ub ? ub[i] : 0.0f), alpha, limit);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void GluRowAvx512(const float* g, const float* u,
                                                                      const float* gb, const float* ub,
                                                                      float alpha, float limit, int64_t n,
                                                                      float* out) {
  const __m512 one = _mm512_set1_ps(1.0f), lim = _mm512_set1_ps(limit), neg_lim = _mm512_set1_ps(-limit);
  const __m512 a = _mm512_set1_ps(alpha > 0.0f ? alpha : 1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    if (gb != nullptr) gv = _mm512_add_ps(gv, _mm512_maskz_loadu_ps(m, gb + i));
    if (ub != nullptr) uv = _mm512_add_ps(uv, _mm512_maskz_loadu_ps(m, ub + i));
    if (alpha > 0.0f) {
      gv = _mm512_min_ps(gv, lim);
      uv = _mm512_add_ps(_mm512_min_ps(_mm512_max_ps(uv, neg_lim), lim), one);
    }
    const __m512 sig = _mm512_div_ps(gv, _mm512_add_ps(one, Exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), gv))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(sig, uv));
  }
}

}  // namespace

void SiluMulRows(base::CpuIsa isa, const float* gate, const float* up, int64_t ld_in, int64_t rows, int64_t cols,
                 model::DType act_dtype, void* act, int64_t ld_act, int threads, const GluParams& glu) {
  auto* plain = isa >= base::CpuIsa::kAvx512 ? RowAvx512 : isa == base::CpuIsa::kAvx2 ? RowAvx2 : RowScalar;
  auto* general = isa >= base::CpuIsa::kAvx512 ? GluRowAvx512 : GluRowScalar;
  const bool simple = glu.gate_bias == nullptr && glu.up_bias == nullptr && glu.alpha <= 0.0f;
  const auto row = [&](const float* g, const float* u, int64_t n, float* out) {
    if (simple) {
      plain(g, u, n, out);
    } else {
      general(g, u, glu.gate_bias, glu.up_bias, glu.alpha, glu.limit, n, out);
    }
  };
  const bool bf16 = act_dtype == model::DType::kBF16;
  // Below ~64K elements a parallel region costs more than it saves.
  const int team = rows * cols >= (int64_t{1} << 16) ? threads : 1;
#pragma omp parallel num_threads(team)
  {
    // bf16: silu·u lands in a per-thread f32 row, then is rounded once.
    thread_local std::vector<float> product;
    if (bf16 && product.size() < static_cast<size_t>(cols)) product.resize(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* g = gate + r * ld_in;
      const float* u = up + r * ld_in;
      if (bf16) {
        row(g, u, cols, product.data());
        RoundToBf16(isa, product.data(), static_cast<uint16_t*>(act) + r * ld_act, cols);
      } else {
        row(g, u, cols, static_cast<float*>(act) + r * ld_act);
      }
    }
  }
}

}  // namespace moe::experts
