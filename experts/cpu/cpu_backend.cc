// experts/cpu/cpu_backend.cc
#include "experts/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/sanitizer_threads.h"
#include "base/status_macros.h"
#include "experts/cpu/cpu_amx_product.h"
#include "experts/cpu/cpu_kernel_config.h"
#include "experts/cpu/cpu_quantized_product.h"
#include "experts/cpu/cpu_small_rows.h"
#include "experts/cpu/cpu_swiglu.h"

namespace moe::experts {
namespace {

// Up to this many rows per expert our streaming kernels beat oneDNN's (measured 2026-12-01 on a
// 2-core Xeon with AMX, docs/BENCHMARKS.md "crossover"): bf16 1-2 rows (from 4 rows AMX wins even
// though the product is still bound by reading the weights), f32 up to ~8-12 rows.
constexpr int kSmallRowsBf16 = 2;
constexpr int kSmallRowsF32 = 8;
// bf16 on CPUs without bf16 instructions (AVX2, AVX-512F): our streaming kernel up to this many
// rows, widened weights on oneDNN's f32 GEMM past it (measured 2026-12-06 on a 2-core AMD EPYC
// Zen 3, docs/BENCHMARKS.md "bf16 without bf16 instructions").
constexpr int kSmallRowsBf16Widened = 64;
// Quantized experts: QuantizedProduct up to this many rows, widened weights on oneDNN's f32 GEMM
// past it. On int8 activations the integer dot products stay ahead longer: at 64 rows one q4_k
// expert ran 3566 tokens/s against the widened path's 2690, at 256 rows 3026 against 3972
// (2026-12-07, 2-core AMD EPYC Zen 3, docs/BENCHMARKS.md).
constexpr int kSmallRowsQuantized = 32;
constexpr int kSmallRowsQuantizedInt8 = 128;
// On bf16 activations (AVX512_BF16) the decoded tiles stay ahead of the widened f32 GEMM at every
// row count measured (one q4_k expert at 1024 rows 68.7 ms against 118 ms, 2026-12-08, 2-core AMD
// EPYC Zen 4), so they run at every row count; a single row (decode) takes the f32-activation
// kernels, which stream the weights faster than decoding them to bf16 (0.47 against 0.86 ms).
constexpr int kSmallRowsQuantizedBf16 = std::numeric_limits<int>::max();
constexpr int kBf16MinRows = 2;

// The bias slice and activation of an expert's w1|w3 columns from `first` on (for SiluMulRows).
template <typename Expert>
GluParams GluOf(const Expert& e, int64_t first) {
  return GluParams{.gate_bias = e.b1.empty() ? nullptr : e.b1.data() + first,
                   .up_bias = e.b3.empty() ? nullptr : e.b3.data() + first,
                   .alpha = e.alpha,
                   .limit = e.limit};
}

// out[r, :] += b2 for r < rows (experts with biases).
template <typename Expert>
void AddDownBias(const Expert& e, int64_t rows, int64_t h, float* out) {
  if (e.b2.empty()) return;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < h; ++j) out[r * h + j] += e.b2[j];
  }
}

// dst[r·ld + j] = src[r·ld + j] rounded to bf16 (and back to f32), for r < rows, j < width.
void RoundRowsToBf16(const float* src, int64_t rows, int64_t width, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < width; ++j) dst[r * ld + j] = model::BF16ToF32(model::F32ToBF16(src[r * ld + j]));
  }
}

// Rows [begin, begin + count) of w1 and then the same rows of w3, in their own dtype (for
// packing one slice of the w1|w3 product).
std::vector<uint8_t> StackRows(const model::Tensor& w1, const model::Tensor& w3, int64_t begin, int64_t count) {
  const size_t row_bytes = w1.num_bytes() / static_cast<size_t>(w1.dim(0));
  const auto* a = static_cast<const uint8_t*>(w1.raw_data()) + begin * row_bytes;
  const auto* b = static_cast<const uint8_t*>(w3.raw_data()) + begin * row_bytes;
  std::vector<uint8_t> both(a, a + count * row_bytes);
  both.insert(both.end(), b, b + count * row_bytes);
  return both;
}

void ToBf16Rows(base::CpuIsa isa, const float* in, int64_t rows, int64_t width, int64_t ld, uint16_t* out) {
  if (ld == width) {
    RoundToBf16(isa, in, out, rows * width);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    RoundToBf16(isa, in + r * width, out + r * ld, width);
    std::fill(out + r * ld + width, out + (r + 1) * ld, uint16_t{0});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuExpertBackend>> CpuExpertBackend::Create(
    const model::Checkpoint& checkpoint, absl::Span<const ExpertKey> hosted, Options options) {
  std::vector<ExpertWeights> weights;
  weights.reserve(hosted.size());
  for (const ExpertKey& key : hosted) {
    ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, key, {.keep_quantized = true}));
    weights.push_back(std::move(w));
  }
  return FromWeights(weights, options);
}

bool CpuExpertBackend::OneDnnServes(model::DType dtype) const {
  return !onednn_is_reference_ && (dtype == model::DType::kF32 || isa_ >= base::CpuIsa::kAvx512Bf16);
}

absl::StatusOr<std::unique_ptr<CpuExpertBackend>> CpuExpertBackend::FromWeights(
    absl::Span<const ExpertWeights> weights, Options options) {
  if (weights.empty()) return absl::InvalidArgumentError("a CPU backend needs at least one expert");
  if (options.int8_activations && options.bf16_activations) {
    return absl::InvalidArgumentError("int8 and bf16 activations exclude each other: ask for one");
  }
  return Assemble(options, {}, weights);
}

absl::StatusOr<std::unique_ptr<ExpertBackend>> CpuExpertBackend::Rebuild(absl::Span<const ExpertWeights> add,
                                                                         absl::Span<const ExpertKey> remove) const {
  std::vector<std::pair<ExpertKey, std::shared_ptr<const Expert>>> kept;
  for (const ExpertKey& key : remove) {
    if (!experts_.contains(key)) {
      return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer, " is not hosted"));
    }
  }
  for (const ExpertKey& key : hosted_) {
    if (std::find(remove.begin(), remove.end(), key) == remove.end()) kept.emplace_back(key, experts_.at(key));
  }
  if (kept.empty() && add.empty()) return absl::InvalidArgumentError("a CPU backend needs at least one expert");
  ASSIGN_OR_RETURN(std::unique_ptr<CpuExpertBackend> rebuilt, Assemble(options_, kept, add));
  return std::unique_ptr<ExpertBackend>(std::move(rebuilt));
}

absl::StatusOr<int64_t> CpuExpertBackend::ResidentBytesOf(const ExpertWeights& w, const Options& options) {
  const auto bytes = [](const model::Tensor& t, bool keep_bf16) {
    return static_cast<int64_t>(t.num_elements()) * (keep_bf16 ? 2 : 4);
  };
  if (w.quantized()) return static_cast<int64_t>(w.q1->bytes() + w.q3->bytes() + w.q2->bytes());
  if (options.quantize != nullptr) {
    ASSIGN_OR_RETURN(const ExpertWeights q, QuantizeExpertWeights(w, *options.quantize));
    return static_cast<int64_t>(q.q1->bytes() + q.q3->bytes() + q.q2->bytes());
  }
  const bool keep_bf16 = w.w1.dtype() == model::DType::kBF16 && w.w3.dtype() == model::DType::kBF16 &&
                         w.w2.dtype() == model::DType::kBF16 && !options.f32_compute;
  return bytes(w.w1, keep_bf16) + bytes(w.w3, keep_bf16) + bytes(w.w2, keep_bf16);
}

absl::StatusOr<CpuExpertBackend::Expert> CpuExpertBackend::BuildExpert(const ExpertWeights& given,
                                                                     const Options& options) const {
  const auto shape_of = [](const model::Tensor& t, const std::shared_ptr<const model::QuantizedMatrix>& q) {
    return q != nullptr ? std::vector<int64_t>{q->n(), q->k()} : t.shape();
  };
  const int64_t hidden = hidden_;
  ExpertWeights quantized;
  if (options.quantize != nullptr && !given.quantized()) {
    ASSIGN_OR_RETURN(quantized, QuantizeExpertWeights(given, *options.quantize));
  }
  const ExpertWeights& w = quantized.quantized() ? quantized : given;
  const std::vector<int64_t> s1 = shape_of(w.w1, w.q1), s3 = shape_of(w.w3, w.q3), s2 = shape_of(w.w2, w.q2);
  const int64_t inter = s1.size() == 2 ? s1[0] : 0;
  const std::vector<int64_t> up_shape = {inter, hidden};
  const std::vector<int64_t> down_shape = {hidden, inter};
  if (inter <= 0 || hidden <= 0 || s1 != up_shape || s3 != up_shape || s2 != down_shape ||
      (w.quantized() && (w.q3 == nullptr || w.q2 == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert ", w.key.expert, " of layer ", w.key.layer, " has shapes w1 ", model::ShapeString(s1), " w3 ",
        model::ShapeString(s3), " w2 ", model::ShapeString(s2), "; expected w1/w3 [I, ", hidden, "] and w2 [", hidden,
        ", I]"));
  }
  Expert e;
  e.inter = inter;
  if (w.quantized()) {
    e.q1 = w.q1;
    e.q3 = w.q3;
    e.q2 = w.q2;
    e.int8 = options.int8_activations && HasInt8Kernel(e.q1->format(), isa_) && HasInt8Kernel(e.q3->format(), isa_) &&
             HasInt8Kernel(e.q2->format(), isa_);
    e.bf16 = options.bf16_activations && HasBf16Kernel(e.q1->format(), isa_) &&
             HasBf16Kernel(e.q3->format(), isa_) && HasBf16Kernel(e.q2->format(), isa_);
    e.bytes = static_cast<int64_t>(e.q1->bytes() + e.q3->bytes() + e.q2->bytes());
    e.kind = e.q1->format().name;
  } else {
    // bf16 stays bf16 (unless f32 compute is asked for); f16 has no kernels and is widened.
    const bool keep_bf16 = w.w1.dtype() == model::DType::kBF16 && w.w3.dtype() == model::DType::kBF16 &&
                           w.w2.dtype() == model::DType::kBF16 && !options.f32_compute;
    const model::DType dtype = keep_bf16 ? model::DType::kBF16 : model::DType::kF32;
    // oneDNN's f32 brgemm reads the blocked layout; its AVX2 jit gemm wants plain rows.
    const PackedLayout layout = keep_bf16 || isa_ >= base::CpuIsa::kAvx512 ? PackedLayout::kBlocked : PackedLayout::kPlainKN;
    // (w1 and w3 of different dtypes, which no checkpoint writer makes, are stacked as f32.)
    const bool same = w.w1.dtype() == w.w3.dtype();
    const model::Tensor w1 = same ? model::Tensor() : w.w1.ToF32(), w3 = same ? model::Tensor() : w.w3.ToF32();
    for (int64_t begin = 0; begin < inter; begin += gate_up_slice_) {
      const int64_t count = std::min<int64_t>(gate_up_slice_, inter - begin);
      const std::vector<uint8_t> rows = same ? StackRows(w.w1, w.w3, begin, count) : StackRows(w1, w3, begin, count);
      ASSIGN_OR_RETURN(PackedWeight slice, PackedWeight::Pack(rows.data(), same ? w.w1.dtype() : model::DType::kF32,
                                                              2 * count, hidden, dtype, layout));
      e.bytes += static_cast<int64_t>(slice.bytes());
      e.gate_up.push_back(std::move(slice));
    }
    ASSIGN_OR_RETURN(e.w2, PackedWeight::Pack(w.w2.raw_data(), w.w2.dtype(), hidden, inter, dtype, layout));
    e.bytes += static_cast<int64_t>(e.w2.bytes());
    e.kind = keep_bf16 ? "bf16" : "f32";
  }
  if (w.b1.rank() > 0 || w.b3.rank() > 0 || w.b2.rank() > 0) {  // a default Tensor has rank 0
    if (w.b1.shape() != std::vector<int64_t>{inter} || w.b3.shape() != std::vector<int64_t>{inter} ||
        w.b2.shape() != std::vector<int64_t>{hidden}) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer,
                                                     " has biases ", model::ShapeString(w.b1.shape()), ", ",
                                                     model::ShapeString(w.b3.shape()), ", ", model::ShapeString(w.b2.shape()),
                                                     "; expected [I], [I], [H]"));
    }
    const auto f32 = [](const model::Tensor& t) {
      const model::Tensor f = t.ToF32();
      return std::vector<float>(f.f32().begin(), f.f32().end());
    };
    e.b1 = f32(w.b1);
    e.b3 = f32(w.b3);
    e.b2 = f32(w.b2);
  }
  e.alpha = w.activation.alpha;
  e.limit = w.activation.limit;
  return e;
}

absl::StatusOr<std::unique_ptr<CpuExpertBackend>> CpuExpertBackend::Assemble(
    const Options& options, absl::Span<const std::pair<ExpertKey, std::shared_ptr<const Expert>>> kept,
    absl::Span<const ExpertWeights> weights) {
  ASSIGN_OR_RETURN(const CpuKernelConfig config, ConfigureCpuKernels());
  std::unique_ptr<CpuExpertBackend> backend(new CpuExpertBackend());
  backend->options_ = options;
  backend->isa_ = config.choice.isa;
  // One thread under ThreadSanitizer (base/sanitizer_threads.h says why).
  backend->threads_ = base::ThreadsForThisBuild(options.threads > 0 ? options.threads : omp_get_num_procs());
  backend->gate_up_slice_ = options.gate_up_slice > 0 ? options.gate_up_slice : kGateUpSlice;
  backend->own_amx_ = backend->isa_ == base::CpuIsa::kAmx && !options.onednn_amx;
  int64_t hidden = 0;
  if (!kept.empty()) {
    const Expert& e = *kept.front().second;
    hidden = e.q2 != nullptr ? e.q2->n() : e.w2.n();
  } else {
    const ExpertWeights& first = weights.front();
    const std::vector<int64_t> up = first.q1 != nullptr ? std::vector<int64_t>{first.q1->n(), first.q1->k()} : first.w1.shape();
    hidden = up.size() == 2 ? up[1] : 0;
  }
  backend->hidden_ = static_cast<int>(hidden);
  for (const auto& [key, expert] : kept) {
    backend->experts_.emplace(key, expert);
    backend->hosted_.push_back(key);
  }
  for (const ExpertWeights& w : weights) {
    if (backend->experts_.contains(w.key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer, " given twice"));
    }
    ASSIGN_OR_RETURN(Expert e, backend->BuildExpert(w, options));
    backend->experts_.emplace(w.key, std::make_shared<const Expert>(std::move(e)));
    backend->hosted_.push_back(w.key);
  }
  std::sort(backend->hosted_.begin(), backend->hosted_.end());
  bool any_bf16 = false, any_f32 = false;
  std::set<std::string> formats;  // of the quantized experts
  for (const auto& [key, e] : backend->experts_) {
    backend->resident_.bytes += e->bytes;
    backend->intermediate_ = std::max<int>(backend->intermediate_, static_cast<int>(e->inter));
    if (e->q1 != nullptr) {
      formats.insert(e->kind);
    } else {
      (e->kind == "bf16" ? any_bf16 : any_f32) = true;
    }
  }
  const int kinds = static_cast<int>(any_bf16) + static_cast<int>(any_f32) + static_cast<int>(formats.size());
  backend->resident_.dtype = kinds > 1 ? "mixed" : any_bf16 ? "bf16" : any_f32 ? "f32" : *formats.begin();
  const model::DType main_dtype = any_bf16 ? model::DType::kBF16 : model::DType::kF32;
  backend->widen_bf16_ = any_bf16 && backend->isa_ >= base::CpuIsa::kAvx2 && !backend->OneDnnServes(model::DType::kBF16);
  backend->small_rows_ = options.small_rows >= 0        ? options.small_rows
                         : backend->widen_bf16_          ? kSmallRowsBf16Widened
                         : main_dtype == model::DType::kBF16 ? kSmallRowsBf16
                                                         : kSmallRowsF32;
  backend->quantized_rows_ = options.small_rows >= 0 ? options.small_rows : kSmallRowsQuantized;
  backend->int8_rows_ = options.small_rows >= 0 ? options.small_rows : kSmallRowsQuantizedInt8;
  backend->int8_activations_ = options.int8_activations;
  backend->bf16_activations_ = options.bf16_activations;
  backend->bf16_rows_ = options.small_rows >= 0 ? options.small_rows : kSmallRowsQuantizedBf16;
  // The first expert of each kind names the kernels below.
  const Expert* plain = nullptr;
  const Expert* quantized = nullptr;
  for (const ExpertKey& key : backend->hosted_) {
    const Expert& x = *backend->experts_.find(key)->second;
    const Expert*& first = x.q1 != nullptr ? quantized : plain;
    if (first == nullptr) first = &x;
  }

  // Build one primitive now, so that the startup line names the kernel oneDNN chose.
  // Our kernels' level: vdpbf16ps for bf16 (also on AMX CPUs); f32 needs no more than AVX-512.
  const std::string own = std::string(
      base::CpuIsaName(std::min(backend->isa_, main_dtype == model::DType::kBF16 ? base::CpuIsa::kAvx512Bf16 : base::CpuIsa::kAvx512)));
  std::vector<float> in(static_cast<size_t>(16 * hidden), 0.0f), out(in.size());
  absl::MutexLock lock(&backend->mu_);
  omp_set_num_threads(backend->threads_);
  if (plain == nullptr) {
    // Only quantized experts: named below.
  } else if (backend->OneDnnServes(main_dtype)) {
    const int saved = backend->small_rows_;
    backend->small_rows_ = 0;
    RETURN_IF_ERROR(backend->RunChunk(*plain, in.data(), out.data(), 16));
    backend->small_rows_ = saved;
    backend->kernels_ = absl::StrCat("oneDNN ", backend->matmuls_.last_impl(), " for > ", saved, " rows, own ",
                                     own, " for <= ", saved);
    if (main_dtype == model::DType::kBF16 && backend->own_amx_) {
      backend->kernels_ = absl::StrCat("own amx (32x32 tiles, weights prefetched) for > ", saved, " rows, own ", own,
                                       " for <= ", saved);
    }
    // oneDNN's reference kernels are loops for checking, 10-100x slower than ours.
    if (absl::StartsWith(backend->matmuls_.last_impl(), "ref")) {
      backend->onednn_is_reference_ = true;
      backend->kernels_ = absl::StrCat("own ", own, " for every row count (oneDNN offers only its reference ",
                                       backend->matmuls_.last_impl(), " here)");
    }
  } else if (backend->widen_bf16_) {
    RETURN_IF_ERROR(backend->RunChunkWidened(*plain, in.data(), out.data(), 16));
    backend->kernels_ = absl::StrCat("oneDNN ", backend->matmuls_.last_impl(), " on bf16 weights widened to f32 per product for > ",
                                     backend->small_rows_, " rows, own ", own, " for <= ", backend->small_rows_);
    if (absl::StartsWith(backend->matmuls_.last_impl(), "ref")) {
      backend->widen_bf16_ = false;
      backend->kernels_ = absl::StrCat("own ", own, " for every row count (oneDNN offers only its reference ",
                                       backend->matmuls_.last_impl(), " here)");
    }
  } else {
    backend->kernels_ = absl::StrCat("own ", own, " for every row count (oneDNN has no ",
                                     model::DTypeName(main_dtype), " matmul at ", base::CpuIsaName(backend->isa_), ")");
  }
  if (quantized != nullptr) {
    RETURN_IF_ERROR(backend->RunChunkWidened(*quantized, in.data(), out.data(), 16));
    absl::StrAppend(&backend->kernels_, backend->kernels_.empty() ? "" : "; ",
                    QuantizedKernelName(quantized->q1->format(), backend->isa_,
                                        backend->bf16_activations_   ? QuantizedActivations::kBf16
                                        : backend->int8_activations_ ? QuantizedActivations::kInt8
                                                                     : QuantizedActivations::kF32),
                    quantized->bf16 ? absl::StrCat(" from ", kBf16MinRows, " rows (1 row: ",
                                                   QuantizedKernelName(quantized->q1->format(), backend->isa_), ")")
                                    : "",
                    [&] {
                      const int limit = quantized->int8   ? backend->int8_rows_
                                        : quantized->bf16 ? backend->bf16_rows_
                                                          : backend->quantized_rows_;
                      if (limit == std::numeric_limits<int>::max()) return std::string(" at every row count");
                      return absl::StrCat(" for <= ", limit, " rows, oneDNN ", backend->matmuls_.last_impl(),
                                          " on weights dequantized to f32 per product for more");
                    }());
  }
  backend->kernels_ = absl::StrCat(config.line, ": ", backend->kernels_);
  return backend;
}

std::string CpuExpertBackend::device() const {
  return absl::StrFormat("%d threads; %s; weights %s %.1f MiB", threads_, kernels_, resident_.dtype,
                         static_cast<double>(resident_.bytes) / (1 << 20));
}

template <typename T>
T* CpuExpertBackend::Scratch<T>::Get(size_t count) {
  if (count > capacity_) {  // grow-only: steady state allocates nothing
    const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (data_ == nullptr) {
      capacity_ = 0;
      return nullptr;
    }
    std::memset(data_.get(), 0, bytes);
    capacity_ = count;
  }
  return data_.get();
}

absl::Status CpuExpertBackend::Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                                   absl::Span<float> out) {
  RETURN_IF_ERROR(ValidateGroups(*this, groups, in.size(), out.size()));
  absl::MutexLock lock(&mu_);
  omp_set_num_threads(threads_);  // per calling thread: oneDNN's OpenMP regions follow it
  for (const ExpertGroup& g : groups) {
    const Expert& e = *experts_.find(g.key)->second;
    for (int64_t done = 0; done < g.num_rows; done += MatmulCache::kMaxRows) {
      const int64_t rows = std::min<int64_t>(MatmulCache::kMaxRows, g.num_rows - done);
      const int64_t offset = (g.row_begin + done) * hidden_;
      RETURN_IF_ERROR(RunChunk(e, in.data() + offset, out.data() + offset, rows));
    }
  }
  return absl::OkStatus();
}

absl::Status CpuExpertBackend::RunChunk(const Expert& e, const float* in, float* out, int64_t rows) {
  if (e.q1 != nullptr) {
    return rows <= (e.int8 ? int8_rows_ : e.bf16 ? bf16_rows_ : quantized_rows_) ? RunChunkQuantized(e, in, out, rows)
                                                           : RunChunkWidened(e, in, out, rows);
  }
  const model::DType dtype = e.w2.dtype();
  const bool bf16 = dtype == model::DType::kBF16;
  if (bf16 && widen_bf16_ && rows > small_rows_) return RunChunkWidened(e, in, out, rows);
  const bool own = rows <= small_rows_ || !OneDnnServes(dtype);
  const bool amx = !own && bf16 && own_amx_;  // our AMX product instead of oneDNN's
  const int64_t m = own ? rows : MatmulCache::Bucket(rows);
  const int64_t h = hidden_, inter = e.inter;
  // Our kernels read bf16 rows padded with zeros to the packed K; oneDNN's brgemm wants them
  // dense (a leading dimension past K sends it to its reference kernel).
  const bool padded_k = (own || amx) && bf16;
  const int64_t ldx = padded_k ? e.gate_up[0].k_pad() : h;
  const int64_t ld_act = padded_k ? e.w2.k_pad() : inter;
  // Our small-row kernels write the whole w1|w3 product ([rows, 2I], slice after slice) in one
  // pass over the weights; the products of many rows write one slice at a time into an L2-sized
  // buffer (ours with whole 64-column tiles, to n_pad).
  const int64_t gate_up_cols = own ? 2 * inter : amx ? e.gate_up[0].n_pad() : e.gate_up[0].n();
  const int64_t ldy = amx ? e.w2.n_pad() : h;

  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; };
  const bool copy_f32 = !bf16 && (m != rows || (!own && !aligned(in)));
  uint16_t* xb = bf16 ? x_bf16_.Get(static_cast<size_t>(m * ldx)) : nullptr;
  float* xf = copy_f32 ? x_f32_.Get(static_cast<size_t>(m * h)) : nullptr;
  float* gate_up = gate_up_.Get(static_cast<size_t>(m * gate_up_cols));
  void* act = bf16 ? static_cast<void*>(act_bf16_.Get(static_cast<size_t>(m * ld_act)))
                   : static_cast<void*>(act_f32_.Get(static_cast<size_t>(m * ld_act)));
  float* y_scratch = own ? nullptr : y_.Get(static_cast<size_t>(m * ldy));
  if ((bf16 && xb == nullptr) || (copy_f32 && xf == nullptr) || gate_up == nullptr || act == nullptr ||
      (!own && y_scratch == nullptr)) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate scratch for ", rows, " rows"));
  }
  // The input as the products read it: bf16 rounded once, or f32 as given (copied only to pad
  // the rows up to the bucket or onto a cache-line boundary).
  const void* x = in;
  if (bf16) {
    ToBf16Rows(isa_, in, rows, h, ldx, xb);
    x = xb;
  } else if (copy_f32) {
    std::memcpy(xf, in, static_cast<size_t>(rows * h) * sizeof(float));
    x = xf;
  }
  const size_t act_size = bf16 ? sizeof(uint16_t) : sizeof(float);
  const auto glu = [&](int64_t first) { return GluOf(e, first); };
  const auto add_down_bias = [&] { AddDownBias(e, rows, h, out); };
  const auto act_at = [&](int64_t column) { return static_cast<char*>(act) + column * act_size; };
  const auto zero_act_padding = [&] {  // the products read K padding as zeros
    for (int64_t r = 0; r < rows && ld_act > inter; ++r) {
      std::memset(act_at(r * ld_act + inter), 0, static_cast<size_t>(ld_act - inter) * act_size);
    }
  };
  if (own) {
    SmallRowsProduct(isa_, e.gate_up, x, ldx, rows, gate_up, gate_up_cols, threads_);
    int64_t first = 0;  // the slice's first column of w1 (and of act)
    for (const PackedWeight& slice : e.gate_up) {
      const int64_t cols = slice.n() / 2;
      const float* g = gate_up + 2 * first;
      SiluMulRows(isa_, g, g + cols, gate_up_cols, rows, cols, dtype, act_at(first), ld_act, threads_, glu(first));
      first += cols;
    }
    zero_act_padding();
    SmallRowsProduct(isa_, e.w2, act, ld_act, rows, out, h, threads_);
    add_down_bias();
    return absl::OkStatus();
  }
  // Rows past `rows` (bucket padding) are computed from stale scratch and never read.
  int64_t first = 0;
  for (const PackedWeight& slice : e.gate_up) {
    const int64_t cols = slice.n() / 2;
    if (amx) {
      AmxProduct(slice, xb, ldx, m, gate_up, gate_up_cols, threads_);
    } else {
      RETURN_IF_ERROR(matmuls_.Run(slice, x, m, gate_up));
    }
    SiluMulRows(isa_, gate_up, gate_up + cols, amx ? gate_up_cols : slice.n(), rows, cols, dtype, act_at(first),
                ld_act, threads_, glu(first));
    first += cols;
  }
  float* y = m == rows && ldy == h && aligned(out) ? out : y_scratch;
  if (amx) {
    zero_act_padding();
    AmxProduct(e.w2, static_cast<const uint16_t*>(act), ld_act, m, y, ldy, threads_);
  } else {
    RETURN_IF_ERROR(matmuls_.Run(e.w2, act, m, y));
  }
  if (y != out) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * h, y + r * ldy, static_cast<size_t>(h) * sizeof(float));
  }
  add_down_bias();
  return absl::OkStatus();
}

absl::StatusOr<PackedWeight*> CpuExpertBackend::WidenedScratch(int64_t n, int64_t k, PackedLayout layout) {
  const std::tuple<int64_t, int64_t, int> key{n, k, static_cast<int>(layout)};
  auto it = widened_.find(key);
  if (it == widened_.end()) {
    ASSIGN_OR_RETURN(PackedWeight scratch, PackedWeight::PlainF32(n, k, layout));
    it = widened_.emplace(key, std::move(scratch)).first;
  }
  return &it->second;
}

absl::Status CpuExpertBackend::RunChunkQuantized(const Expert& e, const float* in, float* out, int64_t rows) {
  const int64_t h = hidden_, inter = e.inter;
  float* gate_up = gate_up_.Get(static_cast<size_t>(rows * 2 * inter));
  float* act = act_f32_.Get(static_cast<size_t>(rows * inter));
  if (gate_up == nullptr || act == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate scratch for ", rows, " rows"));
  }
  // The int8 (bf16) path quantizes (rounds) the input once for w1 and w3, and the activation once for w2.
  const bool int8 = e.int8;
  const bool bf16 = e.bf16 && rows >= kBf16MinRows;
  if (int8) {
    QuantizeActivationsInt8(in, h, rows, h, &x_int8_);
    QuantizedProductInt8(isa_, *e.q1, x_int8_, rows, gate_up, 2 * inter, threads_);
    QuantizedProductInt8(isa_, *e.q3, x_int8_, rows, gate_up + inter, 2 * inter, threads_);
  } else if (bf16) {
    ConvertActivationsBf16(isa_, in, h, rows, h, &x_bf16_rows_);
    QuantizedProductBf16(isa_, *e.q1, x_bf16_rows_, rows, gate_up, 2 * inter, threads_);
    QuantizedProductBf16(isa_, *e.q3, x_bf16_rows_, rows, gate_up + inter, 2 * inter, threads_);
  } else {
    QuantizedProduct(isa_, *e.q1, in, h, rows, gate_up, 2 * inter, threads_);
    QuantizedProduct(isa_, *e.q3, in, h, rows, gate_up + inter, 2 * inter, threads_);
  }
  SiluMulRows(isa_, gate_up, gate_up + inter, 2 * inter, rows, inter, model::DType::kF32, act, inter, threads_,
              GluOf(e, 0));
  if (int8) {
    QuantizeActivationsInt8(act, inter, rows, inter, &x_int8_);
    QuantizedProductInt8(isa_, *e.q2, x_int8_, rows, out, h, threads_);
  } else if (bf16) {
    ConvertActivationsBf16(isa_, act, inter, rows, inter, &x_bf16_rows_);
    QuantizedProductBf16(isa_, *e.q2, x_bf16_rows_, rows, out, h, threads_);
  } else {
    QuantizedProduct(isa_, *e.q2, act, inter, rows, out, h, threads_);
  }
  AddDownBias(e, rows, h, out);
  return absl::OkStatus();
}

absl::Status CpuExpertBackend::RunChunkWidened(const Expert& e, const float* in, float* out, int64_t rows) {
  const bool quantized = e.q1 != nullptr;
  const int64_t m = MatmulCache::Bucket(rows), h = hidden_, inter = e.inter;
  const int64_t slice_cols = quantized ? std::min<int64_t>(gate_up_slice_, inter) : e.gate_up[0].n() / 2;
  float* x = x_f32_.Get(static_cast<size_t>(m * h));
  float* gate_up = gate_up_.Get(static_cast<size_t>(m * 2 * slice_cols));
  float* act = act_f32_.Get(static_cast<size_t>(m * inter));
  float* y_scratch = y_.Get(static_cast<size_t>(m * h));
  if (x == nullptr || gate_up == nullptr || act == nullptr || y_scratch == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate scratch for ", rows, " rows"));
  }
  // Rows past `rows` (bucket padding) are computed from stale scratch and never read.
  if (quantized) {
    std::memcpy(x, in, static_cast<size_t>(rows * h) * sizeof(float));
  } else {
    RoundRowsToBf16(in, rows, h, h, x);
  }
  // bf16 slices widen from their packed tiles (K×N); quantized rows dequantize as rows (N×K).
  const PackedLayout layout = quantized ? PackedLayout::kPlainNK : PackedLayout::kPlainKN;
  for (int64_t first = 0, i = 0; first < inter; first += slice_cols, ++i) {
    const int64_t cols = std::min(slice_cols, inter - first);
    ASSIGN_OR_RETURN(PackedWeight * wide, WidenedScratch(2 * cols, h, layout));
    if (quantized) {
      auto* rows_out = static_cast<float*>(wide->mutable_data());
      DequantizeRowsF32(*e.q1, first, cols, rows_out, h, threads_);
      DequantizeRowsF32(*e.q3, first, cols, rows_out + cols * h, h, threads_);
    } else {
      e.gate_up[i].WidenInto(*wide, threads_);
    }
    RETURN_IF_ERROR(matmuls_.Run(*wide, x, m, gate_up));
    SiluMulRows(isa_, gate_up, gate_up + cols, 2 * cols, rows, cols, model::DType::kF32, act + first, inter,
                threads_, GluOf(e, first));
  }
  if (!quantized) RoundRowsToBf16(act, rows, inter, inter, act);
  ASSIGN_OR_RETURN(PackedWeight * wide_w2, WidenedScratch(h, inter, layout));
  if (quantized) {
    DequantizeRowsF32(*e.q2, 0, h, static_cast<float*>(wide_w2->mutable_data()), inter, threads_);
  } else {
    e.w2.WidenInto(*wide_w2, threads_);
  }
  const bool direct = m == rows && reinterpret_cast<uintptr_t>(out) % 64 == 0;
  float* y = direct ? out : y_scratch;
  RETURN_IF_ERROR(matmuls_.Run(*wide_w2, act, m, y));
  if (!direct) std::memcpy(out, y, static_cast<size_t>(rows * h) * sizeof(float));
  AddDownBias(e, rows, h, out);
  return absl::OkStatus();
}

}  // namespace moe::experts
