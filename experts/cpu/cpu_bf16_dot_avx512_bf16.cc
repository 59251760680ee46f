// experts/cpu/cpu_bf16_dot_avx512_bf16.cc
#include "experts/cpu/cpu_bf16_dot_avx512_bf16.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "experts/cpu/cpu_int8_dot_avx2.h"
#include "experts/cpu/cpu_target.h"
#include "model/quantized_matrix.h"

// GCC 12 warns inside its own intrinsics headers (undefined vector values).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
MOE_BEGIN_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
#include "experts/cpu/cpu_int8_rows.h"

namespace moe::experts {
namespace {

// Weight row → bf16: per 32-value slice, the codes widened to f32 and multiplied by their scale,
// the min subtracted after (a multiply, then a subtract: this file is compiled without
// contraction, so the value is the exact dequantized one), then both halves rounded to bf16 at
// once. Lane i of Scales::Lanes scales codes 4i..4i+3, and in every format each half of a slice
// (codes 0-15, 16-31) has one scale (Q6_K's two per slice are those halves): lanes 0 and 4.
template <typename Block>
inline void DecodeRow(const uint8_t* row, int64_t blocks, uint16_t* out) {
  constexpr int kSubs = Block::kValues / 32;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = row + b * Block::kBytes;
    const typename Block::Scales scales(block);
    for (int sub = 0; sub < kSubs; ++sub) {
      const __m256i codes = Block::Codes(block, sub);
      const __m256 lanes = scales.Lanes(sub);
      __m512 lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(codes))),
                                _mm512_broadcastss_ps(_mm256_castps256_ps128(lanes)));
      __m512 hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(codes, 1))),
                                _mm512_broadcastss_ps(_mm256_extractf128_ps(lanes, 1)));
      if constexpr (Block::kHasMin) {
        const __m512 m = _mm512_set1_ps(scales.m1[sub]);
        lo = _mm512_sub_ps(lo, m);
        hi = _mm512_sub_ps(hi, m);
      }
      _mm512_storeu_si512(out + (b * kSubs + sub) * 32, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

// A tile of kJ decoded weight rows (w, kJ rows of k bf16 values, ldw apart) against kRows
// activation rows: y[r·ldy + i] = Σ_c w[i·ldw + c]·x[r·ldx + c]. Each activation load feeds kJ
// vdpbf16ps and each weight load kRows: with 4 × 6 accumulators the loop is bound by the
// instructions, not by reading the activations again for every output feature.
template <int kJ, int kRows>
inline void DotTile(const uint16_t* w, int64_t ldw, int64_t k, const uint16_t* x, int64_t ldx, float* y,
                    int64_t ldy) {
  // A single output feature of a single row keeps several accumulators in flight.
  constexpr int kChains = kJ * kRows >= 4 ? 1 : 4 / (kJ * kRows);
  __m512 acc[kRows][kJ][kChains];
  for (int r = 0; r < kRows; ++r) {
    for (int i = 0; i < kJ; ++i) {
      for (int c = 0; c < kChains; ++c) acc[r][i][c] = _mm512_setzero_ps();
    }
  }
  for (int64_t c = 0, s = 0; c < k; c += 32, ++s) {
    __m512bh wv[kJ];
    for (int i = 0; i < kJ; ++i) wv[i] = (__m512bh)_mm512_loadu_si512(w + i * ldw + c);
    for (int r = 0; r < kRows; ++r) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + r * ldx + c);
      for (int i = 0; i < kJ; ++i) acc[r][i][s % kChains] = _mm512_dpbf16_ps(acc[r][i][s % kChains], wv[i], xv);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int i = 0; i < kJ; ++i) {
      __m512 total = acc[r][i][0];
      for (int c = 1; c < kChains; ++c) total = _mm512_add_ps(total, acc[r][i][c]);
      alignas(64) float lanes[16];  // (GCC 12's _mm512_reduce_add_ps warns in its own header)
      _mm512_store_ps(lanes, total);
      float sum = 0.0f;
      for (const float v : lanes) sum += v;
      y[r * ldy + i] = sum;
    }
  }
}

template <int kJ>
void TileRows(const uint16_t* w, int64_t ldw, int64_t k, const uint16_t* x, int64_t ldx, int64_t rows, float* y,
              int64_t ldy) {
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) DotTile<kJ, 6>(w, ldw, k, x + r * ldx, ldx, y + r * ldy, ldy);
  x += r * ldx;
  y += r * ldy;
  switch (rows - r) {
    case 5: DotTile<kJ, 5>(w, ldw, k, x, ldx, y, ldy); break;
    case 4: DotTile<kJ, 4>(w, ldw, k, x, ldx, y, ldy); break;
    case 3: DotTile<kJ, 3>(w, ldw, k, x, ldx, y, ldy); break;
    case 2: DotTile<kJ, 2>(w, ldw, k, x, ldx, y, ldy); break;
    case 1: DotTile<kJ, 1>(w, ldw, k, x, ldx, y, ldy); break;
    default: break;
  }
}

template <typename Block>
void Decode(const model::QuantizedMatrix& w, int64_t j, uint16_t* out) {
  DecodeRow<Block>(w.row(j), w.k() / Block::kValues, out);
}

}  // namespace

void Bf16TileProduct(const uint16_t* w, int64_t ldw, int64_t tile, int64_t k, const uint16_t* x, int64_t ldx,
                     int64_t rows, float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + kBf16Tile <= tile; i += kBf16Tile) TileRows<kBf16Tile>(w + i * ldw, ldw, k, x, ldx, rows, y + i, ldy);
  for (; i < tile; ++i) TileRows<1>(w + i * ldw, ldw, k, x, ldx, rows, y + i, ldy);
}

#define MOE_BF16_KERNEL(Name, Block) \
  void Name(const model::QuantizedMatrix& w, int64_t j, uint16_t* out) { Decode<Block>(w, j, out); }
MOE_BF16_KERNEL(Q8_0RowToBf16, Q8_0)
MOE_BF16_KERNEL(Q4_0RowToBf16, Q4_0)
MOE_BF16_KERNEL(Q4_KRowToBf16, Q4_K)
MOE_BF16_KERNEL(Q5_KRowToBf16, Q5_K)
MOE_BF16_KERNEL(Q6_KRowToBf16, Q6_K)
MOE_BF16_KERNEL(Iq4XsRowToBf16, Iq4Xs)
MOE_BF16_KERNEL(Mxfp4RowToBf16, Mxfp4)
MOE_BF16_KERNEL(Mxfp4GgufRowToBf16, Mxfp4Gguf)
MOE_BF16_KERNEL(Int4RowToBf16, Int4)
#undef MOE_BF16_KERNEL

}  // namespace moe::experts

MOE_END_TARGET()
