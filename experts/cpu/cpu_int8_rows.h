// experts/cpu/cpu_int8_rows.h
// The int8-activation kernels' body, shared by the ISA levels that run it: each format's block
// decoder (a block or super-block of weights as slices of 32 integer codes, the scale of each
// group of four codes, and the min where the format has one) and the loop over a weight row and
// 1–4 activation rows (RowsOf, Rows), generic in `Dot`, the instruction that multiplies a slice:
//   struct Dot { static __m256i Sums(__m256i w_unsigned, __m256i x_signed); }  // 8 × int32
// (AVX2: vpmaddubsw + vpmaddwd in cpu_int8_dot_avx2.cc; AVX512-VNNI: vpdpbusd in
// cpu_int8_dot_avx512_vnni.cc). Both give the same exact integer sums, so the levels agree bit for
// bit. Internal to those two files: everything here is in an anonymous namespace and carries no
// target attribute of its own except the AVX2 decoders, so each includer compiles its own copy
// for its instruction set: include the headers below first, then MOE_BEGIN_TARGET("...")
// (cpu_target.h), then this file, and MOE_END_TARGET() after the kernels. Stateless; thread-safe. REQUIRES: w.k() a multiple of 32.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "experts/cpu/cpu_int8_dot_avx2.h"
#include "model/quantized_matrix.h"

namespace moe::experts {
namespace {

using avx2_blocks::F16;
using avx2_blocks::Nibbles;
using avx2_blocks::Sum;

// 16 bytes of 4-bit indices into the int8 `table`: codes 0-15 from the low nibbles, 16-31 from
// the high ones.
MOE_AVX2 inline __m256i TableNibbles(const uint8_t* p, __m128i table) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), nibble)),
                          _mm_shuffle_epi8(table, _mm_and_si128(v, nibble)));
}

// E8M0 exponent e as 2^(e − 128): half the block scale, for tables that hold twice the e2m1
// values (0, 1, 2, 3, 4, 6, 8, 12), so that the codes are integers.
MOE_AVX2 inline float HalfE8m0(int e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Decoders: a block (or super-block) of kValues weights as kValues/32 slices of 32 integer codes
// (Codes), the scale of each group of four codes (Scales::Lanes: the eight int32 lanes of a
// slice's dot product), and, where the format has one, the min each value subtracts
// (Scales::Min). kUnsigned: the codes are in [0, 127] (otherwise in [−128, 127]).
struct ScaleOnly {  // one scale for a whole 32-value block
  float d;
  MOE_AVX2 __m256 Lanes(int) const { return _mm256_set1_ps(d); }
};

struct Q8_0 {
  static constexpr int kValues = 32, kBytes = 34;
  static constexpr bool kUnsigned = false, kHasMin = false;
  struct Scales : ScaleOnly {
    MOE_AVX2 explicit Scales(const uint8_t* block) : ScaleOnly{F16(block)} {}
  };
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  }
};

struct Q4_0 {
  static constexpr int kValues = 32, kBytes = 18;
  static constexpr bool kUnsigned = false, kHasMin = false;
  using Scales = Q8_0::Scales;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int) {
    const __m128i table = _mm_setr_epi8(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    return TableNibbles(block + 2, table);
  }
};

// Q4_K's and Q5_K's eight d·scale and dmin·min.
struct KScaleMin : avx2_blocks::KScaleMin {
  using avx2_blocks::KScaleMin::KScaleMin;
  MOE_AVX2 __m256 Lanes(int sub) const { return _mm256_set1_ps(d1[sub]); }
  MOE_AVX2 __m256 Mins() const { return _mm256_loadu_ps(m1); }  // of the eight slices
};

struct Q4_K {
  static constexpr int kValues = 256, kBytes = 144;
  static constexpr bool kUnsigned = true, kHasMin = true;
  using Scales = KScaleMin;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int sub) {
    return Nibbles(block + 16 + 32 * (sub / 2), 4 * (sub % 2));
  }
};

struct Q5_K {
  static constexpr int kValues = 256, kBytes = 176;
  static constexpr bool kUnsigned = true, kHasMin = true;
  using Scales = KScaleMin;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int sub) {
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
    const __m256i fifth = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(sub)), _mm256_set1_epi8(1));
    return _mm256_or_si256(Nibbles(block + 48 + 32 * (sub / 2), 4 * (sub % 2)), _mm256_slli_epi16(fifth, 4));
  }
};

struct Q6_K {
  static constexpr int kValues = 256, kBytes = 210;
  static constexpr bool kUnsigned = false, kHasMin = false;
  struct Scales : avx2_blocks::Q6KScales {  // a slice's first 16 codes take one scale, the next 16 the next
    using avx2_blocks::Q6KScales::Q6KScales;
    MOE_AVX2 __m256 Lanes(int sub) const {
      const int first = 8 * (sub / 4) + 2 * (sub % 4);
      return _mm256_set_m128(_mm_set1_ps(d16[first + 1]), _mm_set1_ps(d16[first]));
    }
  };
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int sub) {
    const int h = sub / 4, c = sub % 4;
    const __m256i low = Nibbles(block + 64 * h + 32 * (c % 2), 4 * (c / 2));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * h));
    const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
  }
};

struct Iq4Xs {
  static constexpr int kValues = 256, kBytes = 136;
  static constexpr bool kUnsigned = false, kHasMin = false;
  struct Scales : avx2_blocks::Iq4XsScales {
    using avx2_blocks::Iq4XsScales::Iq4XsScales;
    MOE_AVX2 __m256 Lanes(int sub) const { return _mm256_set1_ps(dl[sub]); }
  };
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int sub) {
    const __m128i table = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return TableNibbles(block + 8 + 16 * sub, table);
  }
};

// e2m1 codes doubled to integers, with their sign bit.
MOE_AVX2 inline __m128i DoubledE2m1() { return _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12); }

struct Mxfp4Gguf {  // llama.cpp's order: values 0-15 the low nibbles, 16-31 the high ones
  static constexpr int kValues = 32, kBytes = 17;
  static constexpr bool kUnsigned = false, kHasMin = false;
  struct Scales : ScaleOnly {
    MOE_AVX2 explicit Scales(const uint8_t* block) : ScaleOnly{HalfE8m0(block[0])} {}
  };
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int) { return TableNibbles(block + 1, DoubledE2m1()); }
};

struct Mxfp4 {  // gpt-oss's order: value 2i the low nibble of byte i, 2i + 1 its high nibble
  static constexpr int kValues = 32, kBytes = 17;
  static constexpr bool kUnsigned = false, kHasMin = false;
  using Scales = Mxfp4Gguf::Scales;
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 1));
    const __m128i nibble = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(v, nibble), hi = _mm_and_si128(_mm_srli_epi16(v, 4), nibble);
    const __m128i table = DoubledE2m1();
    return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_unpackhi_epi8(lo, hi)),
                            _mm_shuffle_epi8(table, _mm_unpacklo_epi8(lo, hi)));
  }
};

struct Int4 {  // (q − z)·s per 128; slice 2·half + part: bytes [32·part, +32), nibble `half`
  static constexpr int kValues = 128, kBytes = 67;
  static constexpr bool kUnsigned = false, kHasMin = false;
  struct Scales : ScaleOnly {
    MOE_AVX2 explicit Scales(const uint8_t* block) : ScaleOnly{F16(block)} {}
  };
  MOE_AVX2 static inline __m256i Codes(const uint8_t* block, int sub) {
    return _mm256_sub_epi8(Nibbles(block + 3 + 32 * (sub % 2), 4 * (sub / 2)),
                           _mm256_set1_epi8(static_cast<char>(block[2])));
  }
};

// Output feature j of kRows activation rows: per 32-value slice, the integer dot product
// Dot::Sums (eight int32 lanes, each the exact sum of four code products), scaled in f32 by the
// slice's lane scales times the activation block's scale.
template <typename Block, typename Dot, int kRows>
inline void RowsOf(const uint8_t* row, int64_t blocks, const Int8RowsView& x, float* y, int64_t ldy) {
  constexpr int kSubs = Block::kValues / 32;
  static_assert(!Block::kHasMin || kSubs == 8);
  // FMAs in flight: an FMA waits ~4 cycles for its accumulator, a slice takes ~2.
  constexpr int kChains = kRows == 1 ? 4 : kRows == 2 ? 2 : 1;
  __m256 acc[kRows][kChains], mins[kRows];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kChains; ++c) acc[r][c] = _mm256_setzero_ps();
    mins[r] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = row + b * Block::kBytes;
    const typename Block::Scales scales(block);
    for (int sub = 0; sub < kSubs; ++sub) {
      const int64_t xb = b * kSubs + sub;
      const __m256i w = Block::Codes(block, sub);
      const __m256i w_abs = Block::kUnsigned ? w : _mm256_sign_epi8(w, w);
      const __m256 ws = scales.Lanes(sub);
      for (int r = 0; r < kRows; ++r) {
        __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + r * x.ldq + xb * 32));
        if constexpr (!Block::kUnsigned) xv = _mm256_sign_epi8(xv, w);
        const __m256i sums = Dot::Sums(w_abs, xv);
        const __m256 scale = _mm256_mul_ps(ws, _mm256_broadcast_ss(x.d + r * x.ldd + xb));
        acc[r][xb % kChains] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[r][xb % kChains]);
      }
    }
    if constexpr (Block::kHasMin) {  // Σ over the eight slices of min · (the activation block's sum)
      const __m256 m = scales.Mins();
      for (int r = 0; r < kRows; ++r) mins[r] = _mm256_fmadd_ps(m, _mm256_loadu_ps(x.sum + r * x.ldd + b * 8), mins[r]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    __m256 total = acc[r][0];
    for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[r][c]);
    y[r * ldy] = Sum(_mm256_sub_ps(total, mins[r]));
  }
}

template <typename Block, typename Dot>
void Rows(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                   int64_t ldy) {
  const uint8_t* row = w.row(j);
  const int64_t blocks = w.k() / Block::kValues;
  const auto at = [&](int64_t r0) {
    return Int8RowsView{x.q + r0 * x.ldq, x.ldq, x.d + r0 * x.ldd, x.sum + r0 * x.ldd, x.ldd};
  };
  int64_t r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) RowsOf<Block, Dot, 4>(row, blocks, at(r0), y + r0 * ldy, ldy);
  switch (rows - r0) {
    case 3:
      RowsOf<Block, Dot, 3>(row, blocks, at(r0), y + r0 * ldy, ldy);
      break;
    case 2:
      RowsOf<Block, Dot, 2>(row, blocks, at(r0), y + r0 * ldy, ldy);
      break;
    case 1:
      RowsOf<Block, Dot, 1>(row, blocks, at(r0), y + r0 * ldy, ldy);
      break;
    default:
      break;
  }
}

}  // namespace
}  // namespace moe::experts

// Defines, in namespace moe::experts, the kernels of cpu_int8_dot_avx2.h named with `Suffix`
// (Q8_0RowInt8<Suffix>, ...) on `Dot`: one list for every level, so a format is added once.
#define MOE_INT8_KERNEL(Name, Block, Dot)                                                                    \
  void Name(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,        \
            int64_t ldy) {                                                                                   \
    Rows<Block, Dot>(w, j, x, rows, y, ldy);                                                                 \
  }
#define MOE_INT8_KERNELS(Suffix, Dot)                    \
  MOE_INT8_KERNEL(Q8_0RowInt8##Suffix, Q8_0, Dot)        \
  MOE_INT8_KERNEL(Q4_0RowInt8##Suffix, Q4_0, Dot)        \
  MOE_INT8_KERNEL(Q4_KRowInt8##Suffix, Q4_K, Dot)        \
  MOE_INT8_KERNEL(Q5_KRowInt8##Suffix, Q5_K, Dot)        \
  MOE_INT8_KERNEL(Q6_KRowInt8##Suffix, Q6_K, Dot)        \
  MOE_INT8_KERNEL(Iq4XsRowInt8##Suffix, Iq4Xs, Dot)      \
  MOE_INT8_KERNEL(Mxfp4RowInt8##Suffix, Mxfp4, Dot)      \
  MOE_INT8_KERNEL(Mxfp4GgufRowInt8##Suffix, Mxfp4Gguf, Dot) \
  MOE_INT8_KERNEL(Int4RowInt8##Suffix, Int4, Dot)
