// experts/cpu/cpu_int8_dot_avx2.cc
#include "experts/cpu/cpu_int8_dot_avx2.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "experts/cpu/cpu_target.h"
#include "model/quantized_matrix.h"

MOE_BEGIN_TARGET("avx2,fma,f16c")
#include "experts/cpu/cpu_int8_rows.h"

namespace moe::experts {
namespace {

// vpmaddubsw multiplies pairs into int16 (at most 2·128·127: no saturation), vpmaddwd sums pairs
// of those into int32.
struct MaddDot {
  static inline __m256i Sums(__m256i w_unsigned, __m256i x_signed) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w_unsigned, x_signed), _mm256_set1_epi16(1));
  }
};

}  // namespace

MOE_INT8_KERNELS(Avx2, MaddDot)

}  // namespace moe::experts

MOE_END_TARGET()
