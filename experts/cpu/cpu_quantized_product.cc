// experts/cpu/cpu_quantized_product.cc
#include "experts/cpu/cpu_quantized_product.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "experts/cpu/cpu_bf16_dot_avx512_bf16.h"
#include "experts/cpu/cpu_int8_dot_avx2.h"
#include "experts/cpu/cpu_int8_dot_avx512_vnni.h"
#include "experts/cpu/cpu_quantized_avx2.h"
#include "experts/cpu/cpu_small_rows.h"

namespace moe::experts {
namespace {

// Dots one dequantized weight row `w` (k values) with `rows` activation rows: y[r·ldy] = w·x_r.
using RowDot = void (*)(const float* w, int64_t k, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy);

void DotScalar(const float* w, int64_t k, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float s = 0.0f;
    for (int64_t c = 0; c < k; ++c) s += w[c] * xr[c];
    y[r * ldy] = s;
  }
}

__attribute__((target("avx2,fma"))) float SumAvx2(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// Four activation rows at a time share each load of the weight row.
__attribute__((target("avx2,fma"))) void DotAvx2(const float* w, int64_t k, const float* x, int64_t ldx,
                                                  int64_t rows, float* y, int64_t ldy) {
  const int64_t k8 = k / 8 * 8;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *x0 = x + r * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < k8; c += 8) {
      const __m256 wv = _mm256_loadu_ps(w + c);
      a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + c), a0);
      a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + c), a1);
      a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + c), a2);
      a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + c), a3);
    }
    float s[4] = {SumAvx2(a0), SumAvx2(a1), SumAvx2(a2), SumAvx2(a3)};
    for (int64_t c = k8; c < k; ++c) {
      s[0] += w[c] * x0[c];
      s[1] += w[c] * x1[c];
      s[2] += w[c] * x2[c];
      s[3] += w[c] * x3[c];
    }
    for (int i = 0; i < 4; ++i) y[(r + i) * ldy] = s[i];
  }
  for (; r < rows; ++r) {
    const float* xr = x + r * ldx;
    __m256 a = _mm256_setzero_ps();
    for (int64_t c = 0; c < k8; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(xr + c), a);
    float s = SumAvx2(a);
    for (int64_t c = k8; c < k; ++c) s += w[c] * xr[c];
    y[r * ldy] = s;
  }
}

// (GCC 12's _mm512_reduce_add_ps warns of an uninitialised variable in its own header.)
__attribute__((target("avx512f"))) float SumAvx512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0.0f;
  for (float x : lanes) s += x;
  return s;
}

__attribute__((target("avx512f"))) void DotAvx512(const float* w, int64_t k, const float* x, int64_t ldx,
                                                   int64_t rows, float* y, int64_t ldy) {
  const int64_t k16 = k / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *x0 = x + r * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < k16; c += 16) {
      const __m512 wv = _mm512_loadu_ps(w + c);
      a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x0 + c), a0);
      a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x1 + c), a1);
      a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x2 + c), a2);
      a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x3 + c), a3);
    }
    if (tail != 0) {
      const __m512 wv = _mm512_maskz_loadu_ps(tail, w + k16);
      a0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x0 + k16), a0);
      a1 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x1 + k16), a1);
      a2 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x2 + k16), a2);
      a3 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x3 + k16), a3);
    }
    y[r * ldy] = SumAvx512(a0);
    y[(r + 1) * ldy] = SumAvx512(a1);
    y[(r + 2) * ldy] = SumAvx512(a2);
    y[(r + 3) * ldy] = SumAvx512(a3);
  }
  for (; r < rows; ++r) {
    const float* xr = x + r * ldx;
    __m512 a = _mm512_setzero_ps();
    for (int64_t c = 0; c < k16; c += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(xr + c), a);
    if (tail != 0) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w + k16), _mm512_maskz_loadu_ps(tail, xr + k16), a);
    y[r * ldy] = SumAvx512(a);
  }
}

// Output feature j of every row, the weight row dequantized in registers.
using RowKernel = void (*)(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                           float* y, int64_t ldy);

// A format's own kernels, each needing the level its name says (nullptr where it has none): on f32
// activations (AVX2), on int8 activations (AVX2; AVX512-VNNI), on bf16 activations (AVX512-BF16).
struct FormatKernels {
  const char* format;
  RowKernel f32;
  const char* name;  // of the f32 kernel
  Int8RowKernel int8_avx2 = nullptr;
  Int8RowKernel int8_vnni = nullptr;
  Bf16RowDecoder bf16 = nullptr;
};

constexpr FormatKernels kFormats[] = {
    {"q8_0", Q8_0RowAvx2, "avx2 (blocks decoded in registers)", Q8_0RowInt8Avx2, Q8_0RowInt8Avx512Vnni, Q8_0RowToBf16},
    {"q4_0", Q4_0RowAvx2, "avx2 (blocks decoded in registers)", Q4_0RowInt8Avx2, Q4_0RowInt8Avx512Vnni, Q4_0RowToBf16},
    {"q4_k", Q4_KRowAvx2, "avx2 (blocks decoded in registers)", Q4_KRowInt8Avx2, Q4_KRowInt8Avx512Vnni, Q4_KRowToBf16},
    {"q5_k", Q5_KRowAvx2, "avx2 (blocks decoded in registers)", Q5_KRowInt8Avx2, Q5_KRowInt8Avx512Vnni, Q5_KRowToBf16},
    {"q6_k", Q6_KRowAvx2, "avx2 (blocks decoded in registers)", Q6_KRowInt8Avx2, Q6_KRowInt8Avx512Vnni, Q6_KRowToBf16},
    {"iq4_xs", Iq4XsRowAvx2, "avx2 (blocks decoded in registers)", Iq4XsRowInt8Avx2, Iq4XsRowInt8Avx512Vnni, Iq4XsRowToBf16},
    {"mxfp4", Mxfp4RowAvx2, "avx2 (blocks decoded in registers)", Mxfp4RowInt8Avx2, Mxfp4RowInt8Avx512Vnni, Mxfp4RowToBf16},
    {"mxfp4_gguf", Mxfp4GgufRowAvx2, "avx2 (blocks decoded in registers)", Mxfp4GgufRowInt8Avx2, Mxfp4GgufRowInt8Avx512Vnni, Mxfp4GgufRowToBf16},
    {"int4", Int4RowAvx2, "avx2 (groups decoded in registers)", Int4RowInt8Avx2, Int4RowInt8Avx512Vnni, Int4RowToBf16},
    {"fp8_e4m3", ByteCodeRowAvx2, "avx2 (codes decoded in registers)"},
    {"int8", ByteCodeRowAvx2, "avx2 (codes decoded in registers)"},
};

// Every format without its own kernels at the level (or below AVX2): each row dequantized into a
// buffer, then dotted; the first whose level the CPU has.
struct GenericKernel {
  base::CpuIsa isa;
  RowDot dot;
  const char* name;
};
constexpr GenericKernel kGeneric[] = {
    {base::CpuIsa::kAvx512, DotAvx512, "dequantize + avx512 dot"},
    {base::CpuIsa::kAvx2, DotAvx2, "dequantize + avx2 dot"},
    {base::CpuIsa::kScalar, DotScalar, "dequantize + scalar dot"},
};

// What runs `format` at `isa`.
struct Chosen {
  RowKernel fused = nullptr;  // or, where nullptr, the row dequantized into a buffer and `dot`
  RowDot dot = nullptr;
  const char* name = "";
  Int8RowKernel int8 = nullptr;  // on int8 activations, where the format has one at `isa`
  base::CpuIsa int8_isa = base::CpuIsa::kScalar;  // the level that kernel needs
  Bf16RowDecoder bf16 = nullptr;  // on bf16 activations
};

Chosen Choose(const model::WeightFormat& format, base::CpuIsa isa) {
  Chosen c;
  if (isa >= base::CpuIsa::kAvx2) {
    for (const FormatKernels& f : kFormats) {
      if (absl::string_view(f.format) != format.name) continue;
      c.fused = f.f32;
      c.name = f.name;
      if (isa >= base::CpuIsa::kAvx512Vnni && f.int8_vnni != nullptr) {
        c.int8 = f.int8_vnni;
        c.int8_isa = base::CpuIsa::kAvx512Vnni;
      } else if (f.int8_avx2 != nullptr) {
        c.int8 = f.int8_avx2;
        c.int8_isa = base::CpuIsa::kAvx2;
      }
      if (isa >= base::CpuIsa::kAvx512Bf16) c.bf16 = f.bf16;
      return c;
    }
  }
  for (const GenericKernel& g : kGeneric) {
    if (g.isa <= isa) {
      c.dot = g.dot;
      c.name = g.name;
      return c;
    }
  }
  return c;
}

}  // namespace

void QuantizedProduct(base::CpuIsa isa, const model::QuantizedMatrix& w, const float* x, int64_t ldx,
                      int64_t rows, float* y, int64_t ldy, int threads) {
  const Chosen kernel = Choose(w.format(), isa);
  const int64_t n = w.n(), k = w.k();
  if (kernel.fused != nullptr) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < n; ++j) kernel.fused(w, j, x, ldx, rows, y + j, ldy);
    return;
  }
  const RowDot dot = kernel.dot;
#pragma omp parallel num_threads(threads)
  {
    // One dequantized row per thread, on its own cache lines.
    std::unique_ptr<float, decltype(&std::free)> row(
        static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>((k + 15) / 16 * 64))), &std::free);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      w.DequantizeRow(j, row.get());
      dot(row.get(), k, x, ldx, rows, y + j, ldy);
    }
  }
}

void DequantizeRowsF32(const model::QuantizedMatrix& w, int64_t begin, int64_t count, float* out, int64_t ld,
                       int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < count; ++j) w.DequantizeRow(begin + j, out + j * ld);
}

void QuantizeActivationsInt8(const float* x, int64_t ldx, int64_t rows, int64_t k, Int8Activations* out) {
  const int64_t blocks = k / 32;
  if (static_cast<int64_t>(out->q.size()) < rows * k) out->q.resize(static_cast<size_t>(rows * k));
  if (static_cast<int64_t>(out->d.size()) < rows * blocks) {
    out->d.resize(static_cast<size_t>(rows * blocks));
    out->sum.resize(static_cast<size_t>(rows * blocks));
  }
  out->k = k;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* v = x + r * ldx + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
      out->d[r * blocks + b] = d;
      int8_t* q = out->q.data() + r * k + b * 32;
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        q[i] = static_cast<int8_t>(std::lrintf(v[i] * id));
        sum += q[i];
      }
      out->sum[r * blocks + b] = d * static_cast<float>(sum);
    }
  }
}

bool HasInt8Kernel(const model::WeightFormat& format, base::CpuIsa isa) { return Choose(format, isa).int8 != nullptr; }

bool HasBf16Kernel(const model::WeightFormat& format, base::CpuIsa isa) { return Choose(format, isa).bf16 != nullptr; }

void ConvertActivationsBf16(base::CpuIsa isa, const float* x, int64_t ldx, int64_t rows, int64_t k,
                            Bf16Activations* out) {
  if (static_cast<int64_t>(out->x.size()) < rows * k) out->x.resize(static_cast<size_t>(rows * k));
  out->k = k;
  for (int64_t r = 0; r < rows; ++r) RoundToBf16(isa, x + r * ldx, out->x.data() + r * k, k);
}

void QuantizedProductBf16(base::CpuIsa isa, const model::QuantizedMatrix& w, const Bf16Activations& x, int64_t rows,
                          float* y, int64_t ldy, int threads) {
  const Bf16RowDecoder decode = Choose(w.format(), isa).bf16;
  const int64_t n = w.n(), k = w.k(), tiles = (n + kBf16Tile - 1) / kBf16Tile;
#pragma omp parallel num_threads(threads)
  {
    // One decoded tile per thread (kBf16Tile rows of k bf16), on its own cache lines.
    std::unique_ptr<uint16_t, decltype(&std::free)> tile(
        static_cast<uint16_t*>(std::aligned_alloc(64, static_cast<size_t>(kBf16Tile * ((k + 31) / 32) * 64))),
        &std::free);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t j0 = t * kBf16Tile, count = std::min<int64_t>(kBf16Tile, n - j0);
      for (int64_t i = 0; i < count; ++i) decode(w, j0 + i, tile.get() + i * k);
      Bf16TileProduct(tile.get(), k, count, k, x.x.data(), k, rows, y + j0, ldy);
    }
  }
}

void QuantizedProductInt8(base::CpuIsa isa, const model::QuantizedMatrix& w, const Int8Activations& x, int64_t rows,
                          float* y, int64_t ldy, int threads) {
  const Int8RowKernel kernel = Choose(w.format(), isa).int8;
  const int64_t n = w.n(), k = w.k();
  const Int8RowsView view{x.q.data(), k, x.d.data(), x.sum.data(), k / 32};
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < n; ++j) kernel(w, j, view, rows, y + j, ldy);
}

std::string QuantizedKernelName(const model::WeightFormat& format, base::CpuIsa isa,
                                QuantizedActivations activations) {
  const Chosen chosen = Choose(format, isa);
  if (activations == QuantizedActivations::kBf16 && chosen.bf16 != nullptr) {
    return absl::StrCat(format.name, ": ", base::CpuIsaName(base::CpuIsa::kAvx512Bf16),
                        " bf16 dot (rows decoded once to bf16, activations in bf16)");
  }
  if (activations == QuantizedActivations::kInt8 && chosen.int8 != nullptr) {
    return absl::StrCat(format.name, ": ", base::CpuIsaName(chosen.int8_isa),
                        " int8 dot (activations in 8 bits a value, a scale per 32)");
  }
  return absl::StrCat(format.name, ": ", chosen.name);
}

}  // namespace moe::experts
