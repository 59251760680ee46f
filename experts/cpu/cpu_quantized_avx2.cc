// experts/cpu/cpu_quantized_avx2.cc
#include "experts/cpu/cpu_quantized_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "model/fp8.h"

#define MOE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moe::experts {
namespace {

MOE_AVX2 inline float Sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

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
    Block::Decode(row + b * Block::kBytes, wv);
    const float* xb = x + b * 32;
    for (int i = 0; i < 4; ++i) {
      for (int r = 0; r < kRows; ++r) {
        acc[r][i % kChains] = _mm256_fmadd_ps(wv[i], _mm256_loadu_ps(xb + r * ldx + 8 * i), acc[r][i % kChains]);
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
  const int64_t blocks = w.k() / 32;
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

// The 32 int8 weight codes of a block, and its scale.
struct Q8_0Int8 {
  static constexpr int kBytes = 34;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, float* d) {
    uint16_t d_bits;
    std::memcpy(&d_bits, block, 2);
    *d = _cvtsh_ss(d_bits);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  }
};

struct Q4_0Int8 {
  static constexpr int kBytes = 18;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, float* d) {
    uint16_t d_bits;
    std::memcpy(&d_bits, block, 2);
    *d = _cvtsh_ss(d_bits);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i nibble = _mm_set1_epi8(0x0f);
    const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), nibble), _mm_and_si128(v, nibble));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
  }
};

// Σ q_w·q_x over 32 codes as eight int32 lanes: |q_w| (unsigned) times q_x with q_w's sign, pairs
// summed to int16 (at most 2·128·127, no saturation), then to int32.
MOE_AVX2 inline __m256i DotInt8(__m256i w, __m256i x) {
  const __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(products, _mm256_set1_epi16(1));
}

template <typename Block, int kRows>
MOE_AVX2 inline void Int8RowsOf(const uint8_t* row, int64_t blocks, const int8_t* qx, int64_t ldq, const float* dx,
                                int64_t ldd, float* y, int64_t ldy) {
  constexpr int kChains = kRows <= 2 ? 2 : 1;  // FMAs in flight: one a block per row
  __m256 acc[kRows][kChains];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kChains; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    float dw;
    const __m256i w = Block::Codes(row + b * Block::kBytes, &dw);
    for (int r = 0; r < kRows; ++r) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + r * ldq + b * 32));
      const __m256 sums = _mm256_cvtepi32_ps(DotInt8(w, x));
      acc[r][b % kChains] = _mm256_fmadd_ps(sums, _mm256_set1_ps(dw * dx[r * ldd + b]), acc[r][b % kChains]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    __m256 total = acc[r][0];
    for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[r][c]);
    y[r * ldy] = Sum(total);
  }
}

template <typename Block>
MOE_AVX2 void Int8Rows(const model::QuantizedMatrix& w, int64_t j, const int8_t* qx, int64_t ldq, const float* dx,
                       int64_t ldd, int64_t rows, float* y, int64_t ldy) {
  const uint8_t* row = w.row(j);
  const int64_t blocks = w.k() / 32;
  int64_t r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) {
    Int8RowsOf<Block, 4>(row, blocks, qx + r0 * ldq, ldq, dx + r0 * ldd, ldd, y + r0 * ldy, ldy);
  }
  switch (rows - r0) {
    case 3:
      Int8RowsOf<Block, 3>(row, blocks, qx + r0 * ldq, ldq, dx + r0 * ldd, ldd, y + r0 * ldy, ldy);
      break;
    case 2:
      Int8RowsOf<Block, 2>(row, blocks, qx + r0 * ldq, ldq, dx + r0 * ldd, ldd, y + r0 * ldy, ldy);
      break;
    case 1:
      Int8RowsOf<Block, 1>(row, blocks, qx + r0 * ldq, ldq, dx + r0 * ldd, ldd, y + r0 * ldy, ldy);
      break;
    default:
      break;
  }
}

struct Fp8Table {
  float value[256];
  Fp8Table() {
    for (int c = 0; c < 256; ++c) value[c] = model::E4m3ToF32(static_cast<uint8_t>(c));
  }
};

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

void Q8_0RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const int8_t* qx, int64_t ldq, const float* dx,
                     int64_t ldd, int64_t rows, float* y, int64_t ldy) {
  Int8Rows<Q8_0Int8>(w, j, qx, ldq, dx, ldd, rows, y, ldy);
}

void Q4_0RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const int8_t* qx, int64_t ldq, const float* dx,
                     int64_t ldd, int64_t rows, float* y, int64_t ldy) {
  Int8Rows<Q4_0Int8>(w, j, qx, ldq, dx, ldd, rows, y, ldy);
}

MOE_AVX2 void Fp8RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                         float* y, int64_t ldy) {
  static const Fp8Table table;
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
        const __m256 wv = _mm256_mul_ps(_mm256_i32gather_ps(table.value, idx, 4), sv);
        for (int r = 0; r < nr; ++r) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (r0 + r) * ldx + c), acc[r]);
      }
      for (; c < end; ++c) {
        const float wc = table.value[row[c]] * s;
        for (int r = 0; r < nr; ++r) tail[r] += wc * x[(r0 + r) * ldx + c];
      }
    }
    for (int r = 0; r < nr; ++r) y[(r0 + r) * ldy] = Sum(acc[r]) + tail[r];
  }
}

}  // namespace moe::experts
