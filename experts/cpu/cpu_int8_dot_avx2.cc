// experts/cpu/cpu_int8_dot_avx2.cc
#include "experts/cpu/cpu_int8_dot_avx2.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "model/quantized_matrix.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
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

#define MOE_INT8_KERNEL(Name, Block)                                                                         \
  void Name(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,        \
            int64_t ldy) {                                                                                   \
    Rows<Block, MaddDot>(w, j, x, rows, y, ldy);                                                             \
  }
MOE_INT8_KERNEL(Q8_0RowInt8Avx2, Q8_0)
MOE_INT8_KERNEL(Q4_0RowInt8Avx2, Q4_0)
MOE_INT8_KERNEL(Q4_KRowInt8Avx2, Q4_K)
MOE_INT8_KERNEL(Q5_KRowInt8Avx2, Q5_K)
MOE_INT8_KERNEL(Q6_KRowInt8Avx2, Q6_K)
MOE_INT8_KERNEL(Iq4XsRowInt8Avx2, Iq4Xs)
MOE_INT8_KERNEL(Mxfp4RowInt8Avx2, Mxfp4)
MOE_INT8_KERNEL(Mxfp4GgufRowInt8Avx2, Mxfp4Gguf)
MOE_INT8_KERNEL(Int4RowInt8Avx2, Int4)
#undef MOE_INT8_KERNEL

}  // namespace moe::experts

#pragma GCC pop_options
