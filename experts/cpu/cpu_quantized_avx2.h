// experts/cpu/cpu_quantized_avx2.h
// AVX2 kernels that dequantize a low-bit weight row in registers, block by block, and dot it with
// up to four f32 activation rows at a time (cpu_int8_dot_avx2.h has the int8-activation kernels): the row's
// bytes are read once per four rows and never widened in memory. One per format (q8_0, q4_0, q4_k,
// q5_k, q6_k, iq4_xs, mxfp4, mxfp4_gguf, int4; one for the one-byte formats fp8_e4m3 and int8),
// each giving bit for bit the format's exact dequantized values (model/formats). Entries of cpu_quantized_product.cc's kernel
// table; stateless and thread-safe. REQUIRES: a CPU with AVX2, FMA and F16C.
#pragma once

#include <cstdint>

#include "model/quantized_matrix.h"

namespace moe::experts {

// y[r·ldy] = Σ_c W[j, c]·x[r·ldx + c] for r < rows: output feature j of every row.
void Q8_0RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
void Q4_0RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
void Mxfp4RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                  int64_t ldy);
void Q4_KRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
void Q5_KRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
void Q6_KRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
void Iq4XsRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                  int64_t ldy);
void Mxfp4GgufRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                      float* y, int64_t ldy);
void Int4RowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows, float* y,
                 int64_t ldy);
// The one-byte formats (fp8_e4m3, int8): codes looked up in the format's code_values table.
void ByteCodeRowAvx2(const model::QuantizedMatrix& w, int64_t j, const float* x, int64_t ldx, int64_t rows,
                     float* y, int64_t ldy);

}  // namespace moe::experts
