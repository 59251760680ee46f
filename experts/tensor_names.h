// experts/tensor_names.h
// Tensor names of the Mixtral checkpoint layout (routing.md), in one place so the reader, the
// generator and the tests agree. Pure functions; thread-safe.
#pragma once

#include <string>

namespace moe::experts {

// The three projections of a SwiGLU expert, named as in Mixtral: w1 (gate), w3 (up), w2 (down).
enum class Projection { kW1, kW3, kW2 };

// "model.layers.N.block_sparse_moe.gate.weight", shape [E, H].
std::string GateWeightName(int layer);
// "model.layers.N.block_sparse_moe.experts.E.w1.weight": w1/w3 [I, H], w2 [H, I].
std::string ExpertWeightName(int layer, int expert, Projection projection);

}  // namespace moe::experts
