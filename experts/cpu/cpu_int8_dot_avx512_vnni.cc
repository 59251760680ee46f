// experts/cpu/cpu_int8_dot_avx512_vnni.cc
#include "experts/cpu/cpu_int8_dot_avx512_vnni.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "experts/cpu/cpu_block_scales_avx2.h"
#include "model/quantized_matrix.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
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

#define MOE_INT8_KERNEL(Name, Block)                                                                         \
  void Name(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,        \
            int64_t ldy) {                                                                                   \
    Rows<Block, VnniDot>(w, j, x, rows, y, ldy);                                                             \
  }
MOE_INT8_KERNEL(Q8_0RowInt8Avx512Vnni, Q8_0)
MOE_INT8_KERNEL(Q4_0RowInt8Avx512Vnni, Q4_0)
MOE_INT8_KERNEL(Q4_KRowInt8Avx512Vnni, Q4_K)
MOE_INT8_KERNEL(Q5_KRowInt8Avx512Vnni, Q5_K)
MOE_INT8_KERNEL(Q6_KRowInt8Avx512Vnni, Q6_K)
MOE_INT8_KERNEL(Iq4XsRowInt8Avx512Vnni, Iq4Xs)
MOE_INT8_KERNEL(Mxfp4RowInt8Avx512Vnni, Mxfp4)
MOE_INT8_KERNEL(Mxfp4GgufRowInt8Avx512Vnni, Mxfp4Gguf)
MOE_INT8_KERNEL(Int4RowInt8Avx512Vnni, Int4)
#undef MOE_INT8_KERNEL

}  // namespace moe::experts

#pragma GCC pop_options
