// experts/cpu/cpu_int8_dot_avx2.h
// AVX2 kernels for low-bit weights on activations quantized to int8 (a scale per 32 values), the
// way llama.cpp's vec_dot kernels compute: each 32-value slice of a weight row is decoded in
// registers to integer codes (its stored codes, or the format's integer table), multiplied with
// the activation codes by vpmaddubsw + vpmaddwd (exact integer sums of 32 products), and the sum
// is scaled once in f32 by the weight slice's scale(s) and the activation block's scale. Formats
// with a min (Q4_K, Q5_K: x = d·q − m) subtract m·(the activation block's value sum). One kernel
// per format, for q8_0, q4_0, q4_k, q5_k, q6_k, iq4_xs, mxfp4, mxfp4_gguf and int4. Entries of
// cpu_quantized_product.cc's table of formats; stateless and thread-safe. Their body is
// cpu_int8_rows.h, shared with the AVX512-VNNI kernels (cpu_int8_dot_avx512_vnni.h).
// REQUIRES: a CPU with AVX2, FMA and F16C; w.k() a multiple of 32 (every block format's is).
#pragma once

#include <cstdint>

#include "model/quantized_matrix.h"

namespace moe::experts {

// `rows` activation rows quantized in blocks of 32: x[r, c] ≈ d[r·ldd + c/32]·q[r·ldq + c];
// sum[r·ldd + b] = d·Σ q over block b (what a weight block's min multiplies).
struct Int8RowsView {
  const int8_t* q;
  int64_t ldq;
  const float* d;
  const float* sum;
  int64_t ldd;
};

// y[r·ldy] = Σ_c W[j, c]·x̂[r, c] for r < rows: output feature j of every row.
using Int8RowKernel = void (*)(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                               float* y, int64_t ldy);

void Q8_0RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);
void Q4_0RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);
void Q4_KRowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);
void Q5_KRowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);
void Q6_KRowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);
void Iq4XsRowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                      int64_t ldy);
void Mxfp4RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                      int64_t ldy);
void Mxfp4GgufRowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows,
                          float* y, int64_t ldy);
void Int4RowInt8Avx2(const model::QuantizedMatrix& w, int64_t j, const Int8RowsView& x, int64_t rows, float* y,
                     int64_t ldy);

}  // namespace moe::experts
