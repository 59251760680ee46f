// experts/cpu/cpu_quantized_avx2.cc
#include "experts/cpu/cpu_quantized_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"

namespace moe::experts {
namespace {

using avx2_blocks::F16;
using avx2_blocks::KScaleMin;
using avx2_blocks::Nibbles;
using avx2_blocks::Sum;

MOE_AVX2 inline __m256 Int8ToF32(__m128i eight_bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight_bytes)); }

// Block decoders: the 32 values of one block as four vectors of eight, exactly as the scalar
// dequantization computes them.
struct Q8_0 {
  static constexpr int kBytes = 34;
  MOE_AVX2 static inline void Decode(const uint8_t* block, __m256 out[4]) {
    uint16_t d_bits;
    std::memcpy(&d_bits, block, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(d_bits));
    for (int i = 0; i < 4; ++i) {
      out[i] = _mm256_mul_ps(d, Int8ToF32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * i))));
    }
  }
};

struct Q4_0 {
  static constexpr int kBytes = 18;
  MOE_AVX2 static inline void Decode(const uint8_t* block, __m256 out[4]) {
    uint16_t d_bits;
    std::memcpy(&d_bits, block, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(d_bits));
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i nibble = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(v, nibble), eight);                     // values 0-15
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), nibble), eight);  // values 16-31
    out[0] = _mm256_mul_ps(d, Int8ToF32(lo));
    out[1] = _mm256_mul_ps(d, Int8ToF32(_mm_srli_si128(lo, 8)));
    out[2] = _mm256_mul_ps(d, Int8ToF32(hi));
    out[3] = _mm256_mul_ps(d, Int8ToF32(_mm_srli_si128(hi, 8)));
  }
};

struct Mxfp4 {
  static constexpr int kBytes = 17;
  MOE_AVX2 static inline __m256 Codes(__m128i eight_codes, __m256 magnitudes, __m256 scale) {
    const __m256i idx = _mm256_cvtepu8_epi32(eight_codes);
    const __m256 magnitude = _mm256_permutevar8x32_ps(magnitudes, idx);  // low 3 bits
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(idx, _mm256_set1_epi32(8)), 28);
    return _mm256_mul_ps(_mm256_xor_ps(magnitude, _mm256_castsi256_ps(sign)), scale);
  }
  MOE_AVX2 static inline void Decode(const uint8_t* block, __m256 out[4]) {
    // 2^(s − 127): s = 0 is the subnormal 2^−127; s = 255 (NaN in OCP) as ldexp computes it, 2^128.
    const int s = block[0];
    const uint32_t bits = s == 0 ? 0x00400000u : static_cast<uint32_t>(std::min(s, 254)) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    const __m256 scale = _mm256_set1_ps(f);
    const __m256 magnitudes = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 1));
    const __m128i nibble = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(v, nibble), hi = _mm_and_si128(_mm_srli_epi16(v, 4), nibble);
    const __m128i first = _mm_unpacklo_epi8(lo, hi), second = _mm_unpackhi_epi8(lo, hi);  // values 0-15, 16-31
    out[0] = Codes(first, magnitudes, scale);
    out[1] = Codes(_mm_srli_si128(first, 8), magnitudes, scale);
    out[2] = Codes(second, magnitudes, scale);
    out[3] = Codes(_mm_srli_si128(second, 8), magnitudes, scale);
    if (s == 255) {
      for (int i = 0; i < 4; ++i) out[i] = _mm256_add_ps(out[i], out[i]);
    }
  }
};

// Values a block holds: 32 unless the decoder says (the K-quants' and IQ4_XS's super-blocks of
// 256, int4's groups of 128, decoded 32 values at a time by Decode(block, sub, out)).
template <typename Block>
constexpr int Values() {
  if constexpr (requires { Block::kValues; }) {
    return Block::kValues;
  } else {
    return 32;
  }
}

// The scales a decoder computes once per super-block (Block::Scales), or nothing.
struct NoScales {
  explicit NoScales(const uint8_t*) {}
};
template <typename Block>
struct Scales {
  using type = NoScales;
};
template <typename Block>
  requires requires { typename Block::Scales; }
struct Scales<Block> {
  using type = typename Block::Scales;
};

// 32 unsigned bytes as four vectors of eight floats, d·q − m (mul then sub: this file is built
// with -ffp-contract=off, so the two roundings match the scalar decoding's).
MOE_AVX2 inline void AffineU8(__m256i q, float d, float m, __m256 out[4]) {
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  out[0] = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo))), mv);
  out[1] = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)))), mv);
  out[2] = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi))), mv);
  out[3] = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)))), mv);
}

struct Q4_K {
  static constexpr int kValues = 256, kBytes = 144;
  using Scales = KScaleMin;
  MOE_AVX2 static inline void Decode(const uint8_t* block, int sub, const Scales& s, __m256 out[4]) {
    AffineU8(Nibbles(block + 16 + 32 * (sub / 2), 4 * (sub % 2)), s.d1[sub], s.m1[sub], out);
  }
};

struct Q5_K {
  static constexpr int kValues = 256, kBytes = 176;
  using Scales = KScaleMin;
  MOE_AVX2 static inline void Decode(const uint8_t* block, int sub, const Scales& s, __m256 out[4]) {
    const float d1 = s.d1[sub], m1 = s.m1[sub];
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
    const __m256i fifth = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(sub)), _mm256_set1_epi8(1));
    const __m256i q = _mm256_or_si256(Nibbles(block + 48 + 32 * (sub / 2), 4 * (sub % 2)), _mm256_slli_epi16(fifth, 4));
    AffineU8(q, d1, m1, out);
  }
};

struct Q6_K {
  static constexpr int kValues = 256, kBytes = 210;
  using Scales = avx2_blocks::Q6KScales;
  MOE_AVX2 static inline void Decode(const uint8_t* block, int sub, const Scales& s, __m256 out[4]) {
    const int h = sub / 4, c = sub % 4;
    const __m256i low = Nibbles(block + 64 * h + 32 * (c % 2), 4 * (c / 2));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * h));
    const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), _mm256_set1_epi8(3));
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
    const __m256 da = _mm256_set1_ps(s.d16[8 * h + 2 * c]);
    const __m256 db = _mm256_set1_ps(s.d16[8 * h + 2 * c + 1]);
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    out[0] = _mm256_mul_ps(da, Int8ToF32(lo));
    out[1] = _mm256_mul_ps(da, Int8ToF32(_mm_srli_si128(lo, 8)));
    out[2] = _mm256_mul_ps(db, Int8ToF32(hi));
    out[3] = _mm256_mul_ps(db, Int8ToF32(_mm_srli_si128(hi, 8)));
  }
};

// 16 bytes of 4-bit indices into an int8 table: elements 0-15 the low nibbles, 16-31 the high.
MOE_AVX2 inline void TableNibbles(const uint8_t* p, __m128i table, float d, __m256 out[4]) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(v, nibble));
  const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), nibble));
  const __m256 dv = _mm256_set1_ps(d);
  out[0] = _mm256_mul_ps(dv, Int8ToF32(lo));
  out[1] = _mm256_mul_ps(dv, Int8ToF32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_mul_ps(dv, Int8ToF32(hi));
  out[3] = _mm256_mul_ps(dv, Int8ToF32(_mm_srli_si128(hi, 8)));
}

struct Iq4Xs {
  static constexpr int kValues = 256, kBytes = 136;
  using Scales = avx2_blocks::Iq4XsScales;
  MOE_AVX2 static inline void Decode(const uint8_t* block, int sub, const Scales& s, __m256 out[4]) {
    const __m128i table = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    TableNibbles(block + 8 + 16 * sub, table, s.dl[sub], out);
  }
};

struct Mxfp4Gguf {
  static constexpr int kBytes = 17;
  MOE_AVX2 static inline void Decode(const uint8_t* block, __m256 out[4]) {
    const uint8_t e = block[0];
    const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
    float d;
    std::memcpy(&d, &bits, 4);
    const __m128i table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    TableNibbles(block + 1, table, d, out);
  }
};

struct Int4 {
  static constexpr int kValues = 128, kBytes = 67;
  MOE_AVX2 static inline void Decode(const uint8_t* block, int sub, __m256 out[4]) {
    const float s = F16(block);
    const __m256i q = _mm256_sub_epi8(Nibbles(block + 3 + 32 * (sub % 2), 4 * (sub / 2)), _mm256_set1_epi8(static_cast<char>(block[2])));
    const __m256 sv = _mm256_set1_ps(s);
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    out[0] = _mm256_mul_ps(Int8ToF32(lo), sv);
    out[1] = _mm256_mul_ps(Int8ToF32(_mm_srli_si128(lo, 8)), sv);
    out[2] = _mm256_mul_ps(Int8ToF32(hi), sv);
    out[3] = _mm256_mul_ps(Int8ToF32(_mm_srli_si128(hi, 8)), sv);
  }
};

// Output feature j of `kRows` activation rows, accumulators in registers: several independent
// chains per row (an FMA waits ~4 cycles for its accumulator; one chain per row ran at a quarter
// of the FMA rate at 1 row), as many as the 16 ymm registers hold beside the decoded block.
template <typename Block, int kRows>
MOE_AVX2 inline void BlockRowsOf(const uint8_t* row, int64_t blocks, const float* x, int64_t ldx, float* y,
                                 int64_t ldy) {
  constexpr int kChains = kRows <= 2 ? 4 : 2;
  __m256 acc[kRows][kChains];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kChains; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  __m256 wv[4];
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = row + b * Block::kBytes;
    [[maybe_unused]] typename Scales<Block>::type scales(block);  // a super-block's scales, decoded once
    for (int sub = 0; sub < Values<Block>() / 32; ++sub) {
      if constexpr (Values<Block>() == 32) {
        Block::Decode(block, wv);
      } else if constexpr (requires { typename Block::Scales; }) {
        Block::Decode(block, sub, scales, wv);
      } else {
        Block::Decode(block, sub, wv);
      }
      const float* xb = x + b * Values<Block>() + sub * 32;
      for (int i = 0; i < 4; ++i) {
        for (int r = 0; r < kRows; ++r) {
          acc[r][i % kChains] = _mm256_fmadd_ps(wv[i], _mm256_loadu_ps(xb + r * ldx + 8 * i), acc[r][i % kChains]);
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    __m256 total = acc[r][0];
    for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[r][c]);
    y[r * ldy] = Sum(total);
  }
}

template <typename Block>
MOE_AVX2 void BlockRows(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                        float* y, int64_t ldy) {
  const uint8_t* row = w.row(j);
  const int64_t blocks = w.k() / Values<Block>();
  int64_t r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) BlockRowsOf<Block, 4>(row, blocks, x + r0 * ldx, ldx, y + r0 * ldy, ldy);
  switch (rows - r0) {
    case 3:
      BlockRowsOf<Block, 3>(row, blocks, x + r0 * ldx, ldx, y + r0 * ldy, ldy);
      break;
    case 2:
      BlockRowsOf<Block, 2>(row, blocks, x + r0 * ldx, ldx, y + r0 * ldy, ldy);
      break;
    case 1:
      BlockRowsOf<Block, 1>(row, blocks, x + r0 * ldx, ldx, y + r0 * ldy, ldy);
      break;
    default:
      break;
  }
}

}  // namespace

void Q8_0RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy) {
  BlockRows<Q8_0>(w, j, x, ldx, rows, y, ldy);
}

void Q4_0RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy) {
  BlockRows<Q4_0>(w, j, x, ldx, rows, y, ldy);
}

void Mxfp4RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                  int64_t ldy) {
  BlockRows<Mxfp4>(w, j, x, ldx, rows, y, ldy);
}

#define MOE_ROW_KERNEL(Name, Block)                                                                       \
  void Name(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y, \
            int64_t ldy) {                                                                                \
    BlockRows<Block>(w, j, x, ldx, rows, y, ldy);                                                         \
  }
MOE_ROW_KERNEL(Q4_KRowAvx2, Q4_K)
MOE_ROW_KERNEL(Q5_KRowAvx2, Q5_K)
MOE_ROW_KERNEL(Q6_KRowAvx2, Q6_K)
MOE_ROW_KERNEL(Iq4XsRowAvx2, Iq4Xs)
MOE_ROW_KERNEL(Mxfp4GgufRowAvx2, Mxfp4Gguf)
MOE_ROW_KERNEL(Int4RowAvx2, Int4)
#undef MOE_ROW_KERNEL

MOE_AVX2 void ByteCodeRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                              float* y, int64_t ldy) {
  const float* value = w.format().code_values();
  const uint8_t* row = w.row(j);
  const int64_t k = w.k();
  const model::ScaleGrid& grid = w.grid();
  const int64_t span = grid.scales.empty() ? k : grid.cols;
  const float* scales = grid.scales.empty() ? nullptr : grid.scales.data() + (j / grid.rows) * ((k + span - 1) / span);
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, rows - r0));
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float tail[4] = {0, 0, 0, 0};
    for (int64_t c0 = 0; c0 < k; c0 += span) {
      const int64_t end = std::min(k, c0 + span);
      const float s = scales == nullptr ? 1.0f : scales[c0 / span];
      const __m256 sv = _mm256_set1_ps(s);
      int64_t c = c0;
      for (; c + 8 <= end; c += 8) {
        const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c)));
        const __m256 wv = _mm256_mul_ps(_mm256_i32gather_ps(value, idx, 4), sv);
        for (int r = 0; r < nr; ++r) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (r0 + r) * ldx + c), acc[r]);
      }
      for (; c < end; ++c) {
        const float wc = value[row[c]] * s;
        for (int r = 0; r < nr; ++r) tail[r] += wc * x[(r0 + r) * ldx + c];
      }
    }
    for (int r = 0; r < nr; ++r) y[(r0 + r) * ldy] = Sum(acc[r]) + tail[r];
  }
}

}  // namespace moe::experts
