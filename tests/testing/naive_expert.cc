// tests/testing/naive_expert.cc
#include "tests/testing/naive_expert.h"

#include <algorithm>
#include <cmath>

namespace moe::testing {

std::vector<double> NaiveExpert(const experts::ExpertWeights& w, const float* x) {
  const model::Tensor w1 = w.w1.ToF32(), w3 = w.w3.ToF32(), w2 = w.w2.ToF32();
  const int64_t inter = w1.dim(0), hidden = w1.dim(1);
  const bool biased = w.b1.rank() > 0;
  const model::Tensor b1 = biased ? w.b1.ToF32() : model::Tensor(), b3 = biased ? w.b3.ToF32() : model::Tensor(),
               b2 = biased ? w.b2.ToF32() : model::Tensor();
  const double alpha = w.activation.alpha, limit = w.activation.limit;
  std::vector<double> act(inter);
  for (int64_t i = 0; i < inter; ++i) {
    double g = biased ? b1.f32()[i] : 0, u = biased ? b3.f32()[i] : 0;
    for (int64_t j = 0; j < hidden; ++j) {
      g += double(w1.f32()[i * hidden + j]) * x[j];
      u += double(w3.f32()[i * hidden + j]) * x[j];
    }
    if (alpha > 0) {
      g = std::min(g, limit);
      u = std::clamp(u, -limit, limit);
      act[i] = (u + 1) * g / (1.0 + std::exp(-alpha * g));
    } else {
      act[i] = g / (1.0 + std::exp(-g)) * u;
    }
  }
  std::vector<double> y(hidden, 0.0);
  for (int64_t j = 0; j < hidden; ++j) {
    if (biased) y[j] = b2.f32()[j];
    for (int64_t i = 0; i < inter; ++i) y[j] += double(w2.f32()[j * inter + i]) * act[i];
  }
  return y;
}

}  // namespace moe::testing
