// experts/cpu/cpu_int8_dot_avx512_vnni.cc
#include "experts/cpu/cpu_int8_dot_avx512_vnni.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "experts/cpu/cpu_target.h"
#include "model/quantized_matrix.h"

MOE_BEGIN_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#include "experts/cpu/cpu_int8_rows.h"

namespace moe::experts {
namespace {

// vpdpbusd: four u8 × s8 products summed into each int32 lane in one instruction (on 256-bit
// registers: Zen 4 splits 512-bit ones in two, and the slices are 32 bytes).
struct VnniDot {
  static inline __m256i Sums(__m256i w_unsigned, __m256i x_signed) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w_unsigned, x_signed);
  }
};

}  // namespace

MOE_INT8_KERNELS(Avx512Vnni, VnniDot)

}  // namespace moe::experts

MOE_END_TARGET()
