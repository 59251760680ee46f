// experts/cpu/cpu_small_rows.cc
// Each variant walks tile t (64 columns) down the K rows and keeps the running sums of up to
// kRowTile rows in registers. The kernels are compiled for their ISA with target attributes, so
// this file needs no -m flags and the binary runs on any x86-64; callers pass an ISA the CPU has.
#include "experts/cpu/cpu_small_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "absl/container/inlined_vector.h"

// GCC 12 warns inside its own intrinsics headers (_mm512_slli_epi32 uses an undefined value).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace moe::experts {
namespace {

constexpr int64_t kTile = PackedWeight::kTile;

// Software prefetch of the weights this many K steps (pairs for bf16, rows for f32) ahead: 8
// steps of a blocked tile are 2 KiB. With it one bf16 row reads cold weights at the streaming
// bandwidth (measured 2026-12-01, 2-core Xeon: 25.6 GB/s, 21 GB/s without; 1, 4 and 32 KiB
// ahead were no better), since the hardware prefetchers alone stop at the 4 KiB page boundary.
constexpr int64_t kPrefetchSteps = 8;

// One K step of a tile is 64 values: 4 cache lines (f32 or bf16 pairs), 2 (bf16 AVX2 reads
// pairs as 256-byte steps too). Prefetches the step `kPrefetchSteps` after `step`, `step_bytes`
// apart; an address past the buffer's end is harmless for a prefetch.
__attribute__((always_inline)) inline void PrefetchStep(const void* step, int64_t step_bytes) {
  const char* ahead = static_cast<const char*>(step) + kPrefetchSteps * step_bytes;
  _mm_prefetch(ahead, _MM_HINT_T0);
  _mm_prefetch(ahead + 64, _MM_HINT_T0);
  _mm_prefetch(ahead + 128, _MM_HINT_T0);
  _mm_prefetch(ahead + 192, _MM_HINT_T0);
}

// Writes the 64 sums of one row of tile t (`sums`), or the columns of it that exist.
inline void StoreTile(const float* sums, float* y_row, int64_t t, int64_t n) {
  const int64_t begin = t * kTile;
  const int64_t count = std::min<int64_t>(kTile, n - begin);
  std::memcpy(y_row + begin, sums, static_cast<size_t>(count) * sizeof(float));
}

// --- bf16, blocked (pairs of k interleaved: pair p of tile t at tile + p*128) -----------------

void Bf16Scalar(const PackedWeight& w, const uint16_t* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                int64_t t) {
  const uint16_t* tile = static_cast<const uint16_t*>(w.data()) + t * w.tile_stride();
  for (int64_t r = 0; r < rows; ++r) {
    float sums[kTile] = {};
    for (int64_t p = 0; p < w.k_pad() / 2; ++p) {
      const float x0 = model::BF16ToF32(x[r * ldx + 2 * p]), x1 = model::BF16ToF32(x[r * ldx + 2 * p + 1]);
      const uint16_t* b = tile + p * 2 * kTile;
      for (int64_t j = 0; j < kTile; ++j) sums[j] += x0 * model::BF16ToF32(b[2 * j]) + x1 * model::BF16ToF32(b[2 * j + 1]);
    }
    StoreTile(sums, y + r * ldy, t, w.n());
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void Bf16Avx512Bf16(
    const PackedWeight& w, const uint16_t* x, int64_t ldx, int64_t rows, float* y, int64_t ldy, int64_t t) {
  constexpr int kRowTile = 4;
  const uint16_t* tile = static_cast<const uint16_t*>(w.data()) + t * w.tile_stride();
  const int64_t pairs = w.k_pad() / 2;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int nr = static_cast<int>(std::min<int64_t>(kRowTile, rows - r0));
    __m512 acc[kRowTile][4];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; ++p) {
      const __m512i* b = reinterpret_cast<const __m512i*>(tile + p * 2 * kTile);
      PrefetchStep(b, 2 * kTile * sizeof(uint16_t));
      const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
      const __m512bh b2 = (__m512bh)_mm512_load_si512(b + 2), b3 = (__m512bh)_mm512_load_si512(b + 3);
      for (int r = 0; r < nr; ++r) {
        uint32_t pair;
        std::memcpy(&pair, x + (r0 + r) * ldx + 2 * p, sizeof(pair));
        const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xb, b0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xb, b1);
        acc[r][2] = _mm512_dpbf16_ps(acc[r][2], xb, b2);
        acc[r][3] = _mm512_dpbf16_ps(acc[r][3], xb, b3);
      }
    }
    for (int r = 0; r < nr; ++r) {
      alignas(64) float sums[kTile];
      for (int j = 0; j < 4; ++j) _mm512_store_ps(sums + 16 * j, acc[r][j]);
      StoreTile(sums, y + (r0 + r) * ldy, t, w.n());
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void Bf16Avx512(const PackedWeight& w, const uint16_t* x,
                                                                    int64_t ldx, int64_t rows, float* y,
                                                                    int64_t ldy, int64_t t) {
  constexpr int kRowTile = 4;
  const uint16_t* tile = static_cast<const uint16_t*>(w.data()) + t * w.tile_stride();
  const int64_t pairs = w.k_pad() / 2;
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int nr = static_cast<int>(std::min<int64_t>(kRowTile, rows - r0));
    __m512 acc[kRowTile][4];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; ++p) {
      const __m512i* b = reinterpret_cast<const __m512i*>(tile + p * 2 * kTile);
      PrefetchStep(b, 2 * kTile * sizeof(uint16_t));
      __m512 even[4], odd[4];
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_load_si512(b + j);
        even[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        odd[j] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
      }
      for (int r = 0; r < nr; ++r) {
        const uint16_t* xr = x + (r0 + r) * ldx + 2 * p;
        const __m512 x0 = _mm512_set1_ps(model::BF16ToF32(xr[0])), x1 = _mm512_set1_ps(model::BF16ToF32(xr[1]));
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_fmadd_ps(x1, odd[j], _mm512_fmadd_ps(x0, even[j], acc[r][j]));
      }
    }
    for (int r = 0; r < nr; ++r) {
      alignas(64) float sums[kTile];
      for (int j = 0; j < 4; ++j) _mm512_store_ps(sums + 16 * j, acc[r][j]);
      StoreTile(sums, y + (r0 + r) * ldy, t, w.n());
    }
  }
}

__attribute__((target("avx2,fma"))) void Bf16Avx2(const PackedWeight& w, const uint16_t* x, int64_t ldx,
                                                  int64_t rows, float* y, int64_t ldy, int64_t t) {
  const uint16_t* tile = static_cast<const uint16_t*>(w.data()) + t * w.tile_stride();
  const int64_t pairs = w.k_pad() / 2;
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t r = 0; r < rows; ++r) {
    __m256 acc[8];
    for (auto& a : acc) a = _mm256_setzero_ps();
    const uint16_t* xr = x + r * ldx;
    for (int64_t p = 0; p < pairs; ++p) {
      const __m256i* b = reinterpret_cast<const __m256i*>(tile + p * 2 * kTile);
      PrefetchStep(b, 2 * kTile * sizeof(uint16_t));
      const __m256 x0 = _mm256_set1_ps(model::BF16ToF32(xr[2 * p])), x1 = _mm256_set1_ps(model::BF16ToF32(xr[2 * p + 1]));
      for (int j = 0; j < 8; ++j) {
        const __m256i v = _mm256_load_si256(b + j);
        const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
        acc[j] = _mm256_fmadd_ps(x1, odd, _mm256_fmadd_ps(x0, even, acc[j]));
      }
    }
    alignas(32) float sums[kTile];
    for (int j = 0; j < 8; ++j) _mm256_store_ps(sums + 8 * j, acc[j]);
    StoreTile(sums, y + r * ldy, t, w.n());
  }
}

// --- f32 (row k of tile t at tile + k*row_stride; blocked and plain alike) --------------------

void F32Scalar(const PackedWeight& w, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy, int64_t t) {
  const float* tile = static_cast<const float*>(w.data()) + t * w.tile_stride();
  const int64_t cols = std::min<int64_t>(kTile, w.n_pad() - t * kTile);
  for (int64_t r = 0; r < rows; ++r) {
    float sums[kTile] = {};
    for (int64_t k = 0; k < w.k(); ++k) {
      const float xk = x[r * ldx + k];
      const float* b = tile + k * w.row_stride();
      for (int64_t j = 0; j < cols; ++j) sums[j] += xk * b[j];
    }
    StoreTile(sums, y + r * ldy, t, w.n());
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void F32Avx512(const PackedWeight& w, const float* x,
                                                                   int64_t ldx, int64_t rows, float* y,
                                                                   int64_t ldy, int64_t t) {
  constexpr int kRowTile = 4;
  const float* tile = static_cast<const float*>(w.data()) + t * w.tile_stride();
  const int64_t stride = w.row_stride();
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int nr = static_cast<int>(std::min<int64_t>(kRowTile, rows - r0));
    __m512 acc[kRowTile][4];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t k = 0; k < w.k(); ++k) {
      const float* b = tile + k * stride;
      PrefetchStep(b, stride * sizeof(float));
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      const __m512 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
      for (int r = 0; r < nr; ++r) {
        const __m512 xk = _mm512_set1_ps(x[(r0 + r) * ldx + k]);
        acc[r][0] = _mm512_fmadd_ps(xk, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(xk, b1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(xk, b2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(xk, b3, acc[r][3]);
      }
    }
    for (int r = 0; r < nr; ++r) {
      alignas(64) float sums[kTile];
      for (int j = 0; j < 4; ++j) _mm512_store_ps(sums + 16 * j, acc[r][j]);
      StoreTile(sums, y + (r0 + r) * ldy, t, w.n());
    }
  }
}

__attribute__((target("avx2,fma"))) void F32Avx2(const PackedWeight& w, const float* x, int64_t ldx, int64_t rows,
                                                 float* y, int64_t ldy, int64_t t) {
  const float* tile = static_cast<const float*>(w.data()) + t * w.tile_stride();
  const int64_t stride = w.row_stride();
  for (int64_t r = 0; r < rows; ++r) {
    __m256 acc[8];
    for (auto& a : acc) a = _mm256_setzero_ps();
    const float* xr = x + r * ldx;
    for (int64_t k = 0; k < w.k(); ++k) {
      const float* b = tile + k * stride;
      PrefetchStep(b, stride * sizeof(float));
      const __m256 xk = _mm256_set1_ps(xr[k]);
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(xk, _mm256_loadu_ps(b + 8 * j), acc[j]);
    }
    alignas(32) float sums[kTile];
    for (int j = 0; j < 8; ++j) _mm256_store_ps(sums + 8 * j, acc[j]);
    StoreTile(sums, y + r * ldy, t, w.n());
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void RoundToBf16Avx512(const float* src, uint16_t* dst,
                                                                           int64_t count) {
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(0x40);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512i x = _mm512_loadu_si512(src + i);
    const __m512i high = _mm512_srli_epi32(x, 16);
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(x, _mm512_add_epi32(half, _mm512_and_si512(high, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    const __m512i bits = _mm512_mask_or_epi32(rounded, nan, high, quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(bits));
  }
  for (; i < count; ++i) dst[i] = model::F32ToBF16(src[i]);
}

}  // namespace

void RoundToBf16(base::CpuIsa isa, const float* src, uint16_t* dst, int64_t count) {
  if (isa >= base::CpuIsa::kAvx512) {
    RoundToBf16Avx512(src, dst, count);
    return;
  }
  for (int64_t i = 0; i < count; ++i) dst[i] = model::F32ToBF16(src[i]);
}

void SmallRowsProduct(base::CpuIsa isa, absl::Span<const PackedWeight> ws, const void* x, int64_t ldx, int64_t rows,
                      float* y, int64_t ldy, int threads) {
  if (ws.empty()) return;
  // Weight i's tiles follow weight i-1's in one parallel loop; its columns start at col[i].
  absl::InlinedVector<int64_t, 16> first_tile(ws.size() + 1, 0), col(ws.size(), 0);
  for (size_t i = 0; i < ws.size(); ++i) {
    first_tile[i + 1] = first_tile[i] + ws[i].n_pad() / kTile;
    if (i > 0) col[i] = col[i - 1] + ws[i - 1].n();
  }
  const int64_t tiles = first_tile.back();
  // Below 256 KiB of weights (~17 µs for one core to stream) waking a second thread costs more
  // than it saves: measured on the 2-core Xeon, a tiny model's (H 64, I 128) 1-token layer 0.22 →
  // 0.16 ms in-process with one thread.
  size_t weight_bytes = 0;
  for (const PackedWeight& w : ws) weight_bytes += w.bytes();
  if (weight_bytes < (size_t{256} << 10)) threads = 1;
  const auto weight_of = [&](int64_t t) {
    return static_cast<size_t>(std::upper_bound(first_tile.begin(), first_tile.end(), t) - first_tile.begin() - 1);
  };
  if (ws[0].dtype() == model::DType::kBF16) {
    const auto* xb = static_cast<const uint16_t*>(x);
    auto* kernel = isa >= base::CpuIsa::kAvx512Bf16 ? Bf16Avx512Bf16
                   : isa >= base::CpuIsa::kAvx512   ? Bf16Avx512
                   : isa == base::CpuIsa::kAvx2     ? Bf16Avx2
                                              : Bf16Scalar;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const size_t i = weight_of(t);
      kernel(ws[i], xb, ldx, rows, y + col[i], ldy, t - first_tile[i]);
    }
    return;
  }
  const auto* xf = static_cast<const float*>(x);
  auto* kernel = isa >= base::CpuIsa::kAvx512 ? F32Avx512 : isa == base::CpuIsa::kAvx2 ? F32Avx2 : F32Scalar;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    const size_t i = weight_of(t);
    kernel(ws[i], xf, ldx, rows, y + col[i], ldy, t - first_tile[i]);
  }
}

void SmallRowsProduct(base::CpuIsa isa, const PackedWeight& w, const void* x, int64_t ldx, int64_t rows, float* y,
                      int64_t ldy, int threads) {
  SmallRowsProduct(isa, absl::MakeConstSpan(&w, 1), x, ldx, rows, y, ldy, threads);
}

}  // namespace moe::experts
