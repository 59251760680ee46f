// experts/cpu_backend.cc
#include "experts/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"

namespace moe::experts {
namespace {

// silu(gate) ⊙ up for `rows` rows of [gate | up] (each `width` wide), written over gate.
void SiluMulInPlace(float* h, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    float* gate = h + r * 2 * width;
    const float* up = gate + width;
    for (int64_t i = 0; i < width; ++i) {
      const float g = gate[i];
      gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  }
}

// Up to this many rows, a product streams the weights (see StreamedProduct) instead of calling
// sgemm: measured on 2026-11-22 (2-core EPYC, OpenBLAS 0.3.21, docs/BENCHMARKS.md), sgemm takes
// ~3.4 ms for 2–8 rows of a [7168, 1024] weight (it packs all of it first), block-wise sgemv
// 0.8–2.0 ms; from ~12 rows on sgemm wins.
constexpr int64_t kStreamedRows = 12;

// y[r, :n] = w[n, k] · x[r, :k] for r < rows, with w read from memory once: it is walked in
// blocks of about 1 MiB, and each block serves every row (OpenBLAS sgemv) while it is in cache.
void StreamedProduct(const float* x, int64_t rows, int64_t ldx, const float* w, int64_t n, int64_t k, float* y,
                     int64_t ldy) {
  const int64_t block = rows == 1 ? n : std::max<int64_t>(1, (int64_t{1} << 20) / (k * int64_t{sizeof(float)}));
  for (int64_t j = 0; j < n; j += block) {
    const int64_t nb = std::min(block, n - j);
    for (int64_t r = 0; r < rows; ++r) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, nb, k, 1.0f, w + j * k, k, x + r * ldx, 1, 0.0f, y + r * ldy + j, 1);
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuExpertBackend>> CpuExpertBackend::Create(
    const Checkpoint& checkpoint, absl::Span<const ExpertKey> hosted, Options options) {
  std::vector<ExpertWeights> weights;
  weights.reserve(hosted.size());
  for (const ExpertKey& key : hosted) {
    ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, key));
    weights.push_back(std::move(w));
  }
  return FromWeights(weights, options);
}

absl::StatusOr<std::unique_ptr<CpuExpertBackend>> CpuExpertBackend::FromWeights(
    absl::Span<const ExpertWeights> weights, Options options) {
  if (weights.empty()) return absl::InvalidArgumentError("a CPU backend needs at least one expert");
  std::unique_ptr<CpuExpertBackend> backend(new CpuExpertBackend());
  const int64_t hidden = weights[0].w1.rank() == 2 ? weights[0].w1.dim(1) : 0;
  backend->hidden_ = static_cast<int>(hidden);
  for (const ExpertWeights& w : weights) {
    const int64_t inter = w.w1.rank() == 2 ? w.w1.dim(0) : 0;
    const std::vector<int64_t> up_shape = {inter, hidden};
    const std::vector<int64_t> down_shape = {hidden, inter};
    if (inter <= 0 || hidden <= 0 || w.w1.shape() != up_shape || w.w3.shape() != up_shape ||
        w.w2.shape() != down_shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expert ", w.key.expert, " of layer ", w.key.layer, " has shapes w1 ", ShapeString(w.w1.shape()),
          " w3 ", ShapeString(w.w3.shape()), " w2 ", ShapeString(w.w2.shape()), "; expected w1/w3 [I, ",
          hidden, "] and w2 [", hidden, ", I]"));
    }
    if (backend->weights_.contains(w.key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer, " given twice"));
    }
    Packed packed;
    packed.inter = inter;
    const size_t block = static_cast<size_t>(inter * hidden);
    packed.w13.resize(2 * block);
    packed.w2.resize(block);
    ConvertToF32(w.w1.dtype(), w.w1.raw_data(), packed.w13.data(), block);
    ConvertToF32(w.w3.dtype(), w.w3.raw_data(), packed.w13.data() + block, block);
    ConvertToF32(w.w2.dtype(), w.w2.raw_data(), packed.w2.data(), block);
    backend->weights_.emplace(w.key, std::move(packed));
    backend->hosted_.push_back(w.key);
    backend->intermediate_ = std::max<int>(backend->intermediate_, static_cast<int>(inter));
  }
  std::sort(backend->hosted_.begin(), backend->hosted_.end());
  if (options.threads > 0) openblas_set_num_threads(options.threads);
  return backend;
}

std::string CpuExpertBackend::device() const {
  return absl::StrCat(openblas_get_num_threads(), " CPU threads (OpenBLAS ", openblas_get_corename(),
                      ")");
}

absl::Status CpuExpertBackend::Run(absl::Span<const ExpertGroup> groups,
                                   absl::Span<const float> in, absl::Span<float> out) {
  RETURN_IF_ERROR(ValidateGroups(*this, groups, in.size(), out.size()));
  absl::MutexLock lock(&mu_);
  for (const ExpertGroup& g : groups) {
    if (g.num_rows == 0) continue;
    const Packed& w = weights_.find(g.key)->second;
    RunOne(w, in.data() + g.row_begin * hidden_, out.data() + g.row_begin * hidden_, g.num_rows);
  }
  return absl::OkStatus();
}

void CpuExpertBackend::RunOne(const Packed& w, const float* in, float* out, int64_t rows) {
  const int64_t h = hidden_;
  const int64_t i = w.inter;
  const size_t needed = static_cast<size_t>(rows * 2 * i);
  if (scratch_.size() < needed) scratch_.resize(needed);
  float* act = scratch_.data();
  if (rows <= kStreamedRows) {  // few rows: read each weight once, not pack it for sgemm
    StreamedProduct(in, rows, h, w.w13.data(), 2 * i, h, act, 2 * i);
    SiluMulInPlace(act, rows, i);
    StreamedProduct(act, rows, 2 * i, w.w2.data(), h, i, out, h);
    return;
  }
  // [rows, H] · [2I, H]ᵀ → [rows, 2I]; then silu(gate) ⊙ up into the first I columns.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, 2 * i, h, 1.0f, in, h, w.w13.data(), h,
              0.0f, act, 2 * i);
  SiluMulInPlace(act, rows, i);
  // [rows, I] (stride 2I) · [H, I]ᵀ → [rows, H].
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, h, i, 1.0f, act, 2 * i, w.w2.data(), i,
              0.0f, out, h);
}

}  // namespace moe::experts
