// experts/cpu/cpu_int8_dot_avx512_vnni.h
// The int8-activation kernels of cpu_int8_dot_avx2.h on AVX512-VNNI (Cascade Lake, Ice Lake,
// Sapphire Rapids, AMD Zen 4 and later): the same block decoders and loop (cpu_int8_rows.h), each
// 32-value slice multiplied by one vpdpbusd on 256-bit registers instead of vpmaddubsw + vpmaddwd.
// The integer sums are the same exact values, so the results equal the AVX2 kernels' bit for bit.
// Entries of cpu_quantized_product.cc's table of formats at the avx512_vnni level; stateless and
// thread-safe. REQUIRES: a CPU with AVX-512 F/BW/VL and AVX512_VNNI; w.k() a multiple of 32.
#pragma once

#include <cstdint>

#include "experts/cpu/cpu_int8_dot_avx2.h"
#include "model/quantized_matrix.h"

namespace moe::experts {

void Q8_0RowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);
void Q4_0RowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);
void Q4_KRowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);
void Q5_KRowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);
void Q6_KRowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);
void Iq4XsRowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                            float* y, int64_t ldy);
void Mxfp4RowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                            float* y, int64_t ldy);
void Mxfp4GgufRowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                                float* y, int64_t ldy);
void Int4RowInt8Avx512Vnni(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                           float* y, int64_t ldy);

}  // namespace moe::experts
