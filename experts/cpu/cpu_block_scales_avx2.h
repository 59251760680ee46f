// experts/cpu/cpu_block_scales_avx2.h
// What the AVX2 block decoders of cpu_quantized_avx2.cc (f32 activations) and cpu_int8_dot_avx2.cc
// (int8 activations) share: reading an f16, a horizontal sum, 32 nibbles of a row, and the
// per-super-block scales of the K-quants, decoded with vector instructions (one super-block's
// eight Q4_K scales and mins cost ~10 instructions, not a loop of bit fiddling per sub-block) and
// exactly as the scalar decoding of model/formats computes them (one f32 multiply each). Internal
// to experts/cpu; header-only, stateless, thread-safe. REQUIRES: a CPU with AVX2, FMA and F16C.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define MOE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moe::experts::avx2_blocks {

MOE_AVX2 inline float Sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

MOE_AVX2 inline float F16(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _cvtsh_ss(bits);
}

// 32 unsigned 4-bit values: the nibbles of the 32 bytes at `p` shifted right by `shift` (0 or 4).
MOE_AVX2 inline __m256i Nibbles(const uint8_t* p, int shift) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(0x0f));
}

// d · (eight unsigned bytes of `bytes`, low byte first), stored to out[8].
MOE_AVX2 inline void ScaleBytes(uint64_t bytes, float d, float* out) {
  const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes))));
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_set1_ps(d), v));
}

// Q4_K's and Q5_K's eight d·scale and dmin·min (model/formats/k_quants.h UnpackScaleMin: sub-
// blocks 0-3 keep the low 6 bits of bytes 0-3 and 4-7; 4-7 take a nibble of bytes 8-11 and the
// top 2 bits of bytes 0-3 and 4-7), four sub-blocks at a time in 32-bit words.
struct KScaleMin {
  float d1[8], m1[8];
  MOE_AVX2 explicit KScaleMin(const uint8_t* block) {
    uint32_t u[3];
    std::memcpy(u, block + 4, 12);
    const uint32_t low6 = 0x3f3f3f3fu, nibble = 0x0f0f0f0fu, two = 0x03030303u;
    const uint32_t sc_lo = u[0] & low6, m_lo = u[1] & low6;
    const uint32_t sc_hi = (u[2] & nibble) | (((u[0] >> 6) & two) << 4);
    const uint32_t m_hi = ((u[2] >> 4) & nibble) | (((u[1] >> 6) & two) << 4);
    ScaleBytes(sc_lo | static_cast<uint64_t>(sc_hi) << 32, F16(block), d1);
    ScaleBytes(m_lo | static_cast<uint64_t>(m_hi) << 32, F16(block + 2), m1);
  }
};

// Q6_K's sixteen d·scale (int8 scales, f16 d at byte 208).
struct Q6KScales {
  float d16[16];
  MOE_AVX2 explicit Q6KScales(const uint8_t* block) {
    const __m256 d = _mm256_set1_ps(F16(block + 208));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 192));
    _mm256_storeu_ps(d16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
    _mm256_storeu_ps(d16 + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
  }
};

// IQ4_XS's eight d·(ls − 32): ls = (nibble j of bytes 4-7) | (bits 2j, 2j+1 of the u16 at 2) << 4.
struct Iq4XsScales {
  float dl[8];
  MOE_AVX2 explicit Iq4XsScales(const uint8_t* block) {
    uint16_t high;
    uint32_t low;
    std::memcpy(&high, block + 2, 2);
    std::memcpy(&low, block + 4, 4);
    uint64_t ls = 0;
    for (int j = 0; j < 8; ++j) {
      const uint64_t v = ((low >> (4 * j)) & 15) | (((high >> (2 * j)) & 3) << 4);
      ls |= v << (8 * j);
    }
    const __m256 v = _mm256_cvtepi32_ps(
        _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(ls))), _mm256_set1_epi32(32)));
    _mm256_storeu_ps(dl, _mm256_mul_ps(_mm256_set1_ps(F16(block)), v));
  }
};

}  // namespace moe::experts::avx2_blocks
