// experts/cpu/cpu_bf16_dot_avx512_bf16.h
// Kernels for low-bit weights on bf16 activations, for CPUs with AVX512_BF16 (AMD Zen 4 and later,
// Intel Cooper Lake, Sapphire Rapids and later): each weight row is decoded once — the format's
// block decoder of cpu_int8_rows.h gives the integer codes and scales, the exact dequantized value
// (d·q, or d·q − m for the K-quants with a min, as model/formats computes it) is rounded to bf16
// (round to nearest even) into an L1-resident tile of kBf16Tile rows — and the tile is dotted
// with every activation row by vdpbf16ps, 32 products an instruction into f32 accumulators, 4
// output features × 6 rows at a time. Numerics: the product of the
// weights rounded to bf16 and the activations rounded to bf16, summed in f32 (each factor within
// 2^-9 relative). Entries of cpu_quantized_product.cc's table of formats at the avx512_bf16 level;
// stateless and thread-safe. REQUIRES: a CPU with AVX-512 F/BW/VL and AVX512_BF16; w.k() a
// multiple of 32.
#pragma once

#include <cstdint>

#include "model/quantized_matrix.h"

namespace moe::experts {

// out[c] = bf16(W[j, c]) for c < w.k(): row j decoded (round to nearest even).
using Bf16RowDecoder = void (*)(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);

void Q8_0RowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Q4_0RowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Q4_KRowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Q5_KRowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Q6_KRowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Iq4XsRowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Mxfp4RowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Mxfp4GgufRowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);
void Int4RowToBf16(const model::QuantizedMatrix& w, int64_t j, uint16_t* out);

// Output features decoded together: a tile's rows are read once per 6 activation rows.
constexpr int kBf16Tile = 4;

// y[r·ldy + i] = Σ_c w[i·ldw + c]·x[r·ldx + c] for i < tile, r < rows: `tile` decoded weight rows
// (bf16, k values each, k a multiple of 32) against `rows` bf16 activation rows, f32 sums.
void Bf16TileProduct(const uint16_t* w, int64_t ldw, int64_t tile, int64_t k, const uint16_t* x, int64_t ldx,
                     int64_t rows, float* y, int64_t ldy);

}  // namespace moe::experts
