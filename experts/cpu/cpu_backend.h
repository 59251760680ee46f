// experts/cpu/cpu_backend.h
// The CPU expert backend: SwiGLU experts with weights kept in the checkpoint's dtype (bf16 stays
// bf16; f16 is widened to f32, there being no f16 kernels), packed once at load (PackedWeight).
// w1 and w3 are one product, in slices of 512 rows of each (the output of a slice is consumed by
// silu⊙up while it is in L2). Groups of more than `small_rows` rows run on the many-row products:
// for bf16 on AMX CPUs our AMX product (cpu_amx_product.h, which prefetches the weights), else
// oneDNN matmuls (AVX512-BF16 for bf16, AVX-512/AVX2 for f32); fewer rows, and bf16 on CPUs where
// oneDNN has no bf16 kernel, run on our streaming kernels (cpu_small_rows.h); silu(gate)⊙up
// between the products is our vectorised pass (cpu_swiglu.h). bf16 numerics:
// activations rounded once to bf16 before each product, f32 accumulation, f32 output. The
// reference every other backend is tested against. Thread-safe: Run calls are serialised, since
// each product already uses every thread.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/cpu_features.h"
#include "experts/cpu/cpu_matmul.h"
#include "experts/cpu/cpu_packed_weight.h"
#include "experts/cpu/cpu_quantized_product.h"
#include "experts/expert_backend.h"
#include "experts/expert_weights.h"
#include "model/checkpoint.h"
#include "model/quantized_matrix.h"

namespace moe::experts {

class CpuExpertBackend : public ExpertBackend {
 public:
  struct Options {
    int threads = 0;           // compute threads (OpenMP, oneDNN's too); 0 = every core
    bool f32_compute = false;  // widen bf16 weights to f32 and compute in f32
    // groups of up to this many rows use our kernels (quantized experts: the streaming kernels);
    // -1 = measured default
    int small_rows = -1;
    // Columns of w1 (and of w3) per slice of the w1|w3 product (see Expert); 0 = kGateUpSlice.
    int gate_up_slice = 0;
    // On AMX CPUs, bf16 groups of more than `small_rows` rows use oneDNN's AMX matmul instead of
    // ours (cpu_amx_product.h), for comparing the two.
    bool onednn_amx = false;
    // bf16/f32 weights quantized at load to this format (model/formats/weight_format.h; it must
    // have a quantizer); nullptr keeps them as they are. Weights already quantized stay as stored.
    const model::WeightFormat* quantize = nullptr;
    // Quantized experts up to `small_rows` rows (default 128 with int8 kernels): activations
    // quantized to int8 (a scale per 32 values) where the format has int8 kernels (every block
    // format: cpu_int8_dot_avx2.h): faster, ~1.2-1.5 % row error instead of f32's 1e-6. Off by
    // default.
    bool int8_activations = false;
    // Quantized experts at every row count (2 rows on; one row runs the f32-activation kernels):
    // activations rounded to bf16 where the format has bf16 kernels (every block format, on CPUs
    // with AVX512_BF16: cpu_bf16_dot_avx512_bf16.h), each weight row decoded once per product and
    // rounded to bf16, vdpbf16ps. ~0.5 % row error. Off by default; not with int8_activations.
    bool bf16_activations = false;
  };
  // 512 gate + 512 up columns a slice: at 256 rows a slice's bf16 weights (2 MiB for H 1024) and
  // f32 output (1 MiB) stay in L2 while silu⊙up reads it. Measured 2026-12-01 (2-core Xeon,
  // AMX): the [256, 1024] x [1024, 7168] product in 7 slices 15 % faster warm, 7-10 % cold.
  static constexpr int kGateUpSlice = 512;

  // Loads `hosted` from `checkpoint`. Errors as LoadExpertWeights; INVALID_ARGUMENT for a bad
  // MOE_CPU_ISA.
  static absl::StatusOr<std::unique_ptr<CpuExpertBackend>> Create(
      const model::Checkpoint& checkpoint, absl::Span<const ExpertKey> hosted, Options options);
  // Builds from weights already in memory (any dtype; each expert may have its own
  // intermediate size). INVALID_ARGUMENT if the hidden sizes disagree, an expert's three shapes
  // do not fit together, an expert is given twice, or `weights` is empty.
  static absl::StatusOr<std::unique_ptr<CpuExpertBackend>> FromWeights(
      absl::Span<const ExpertWeights> weights, Options options);

  // The estimated bytes `w` will take resident in a backend with `options` (what Rebuild adds;
  // the worker's --memory_budget checks it before loading). Errors as QuantizeExpertWeights.
  static absl::StatusOr<int64_t> ResidentBytesOf(const ExpertWeights& w, const Options& options);

  // A backend with this one's options hosting hosted() − remove + add. The experts kept are
  // shared with this backend, not copied: their memory is freed when the last backend holding
  // them goes. NOT_FOUND for a key of `remove` not hosted; INVALID_ARGUMENT as FromWeights (an
  // expert of `add` already hosted and not removed, nothing left).
  absl::StatusOr<std::unique_ptr<ExpertBackend>> Rebuild(absl::Span<const ExpertWeights> add,
                                                         absl::Span<const ExpertKey> remove) const override;

  std::string name() const override { return "cpu"; }
  // e.g. "2 threads; CPU Intel(R) Xeon(R) ...; kernels amx: oneDNN brg:avx512_core_amx_bf16 for
  // > 4 rows, own avx512_bf16 for <= 4; weights bf16 336.0 MiB".
  std::string device() const override;
  ResidentWeights resident() const override { return resident_; }
  int hidden_size() const override { return hidden_; }
  // The largest intermediate size hosted.
  int intermediate_size() const override { return intermediate_; }
  const std::vector<ExpertKey>& hosted() const override { return hosted_; }
  bool Hosts(const ExpertKey& key) const override { return experts_.contains(key); }
  absl::Status Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                   absl::Span<float> out) override;

  base::CpuIsa isa() const { return isa_; }
  int small_rows() const { return small_rows_; }

 private:
  struct Expert {
    int64_t inter = 0;
    // w1|w3 in slices of `gate_up_slice` rows of each: slice j is [2w, H], w1 rows
    // [j·slice, j·slice + w) then the same rows of w3 (the last slice may be narrower).
    std::vector<PackedWeight> gate_up;
    PackedWeight w2;  // down [H, I]
    std::vector<float> b1, b3, b2;  // biases (gpt-oss), f32; empty when none
    float alpha = 0.0f, limit = 0.0f;  // ExpertActivation
    // Weights resident in a low-bit format (then gate_up and w2 are empty): w1, w3 [I, H], w2 [H, I].
    std::shared_ptr<const model::QuantizedMatrix> q1, q3, q2;
    bool int8 = false;  // Options::int8_activations and w1, w3, w2 all have int8 kernels at isa_
    bool bf16 = false;  // Options::bf16_activations and w1, w3, w2 all have bf16 kernels at isa_
    int64_t bytes = 0;  // resident
    std::string kind;   // "bf16", "f32" or the low-bit format's name
  };
  CpuExpertBackend() = default;
  // The backend hosting `kept` (shared) and `weights` (built here), its kernels chosen and named.
  static absl::StatusOr<std::unique_ptr<CpuExpertBackend>> Assemble(
      const Options& options, absl::Span<const std::pair<ExpertKey, std::shared_ptr<const Expert>>> kept,
      absl::Span<const ExpertWeights> weights);
  // One expert packed for this backend (isa_, hidden_ and gate_up_slice_ set).
  absl::StatusOr<Expert> BuildExpert(const ExpertWeights& w, const Options& options) const;
  // Whether oneDNN has a real (non-reference) matmul for weights of `dtype` at isa_.
  bool OneDnnServes(model::DType dtype) const;
  absl::Status RunChunk(const Expert& e, const float* in, float* out, int64_t rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RunChunk past small_rows_ for weights no oneDNN matmul reads as they are (bf16 on a CPU
  // without bf16 instructions; low-bit formats): each weight (a slice of w1|w3, then w2) widened
  // exactly to f32 just before its product on oneDNN's f32 GEMM. bf16 experts round the
  // activations to bf16 as every bf16 path does, so their products are those of the bf16 kernels
  // (exact in f32) summed in another order; quantized experts compute in f32.
  absl::Status RunChunkWidened(const Expert& e, const float* in, float* out, int64_t rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RunChunk of a quantized expert up to small_rows_: QuantizedProduct streams each weight once.
  absl::Status RunChunkQuantized(const Expert& e, const float* in, float* out, int64_t rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The f32 scratch weight [n, k] in `layout` that RunChunkWidened widens a weight into.
  absl::StatusOr<PackedWeight*> WidenedScratch(int64_t n, int64_t k, PackedLayout layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Grow-only scratch on 64-byte boundaries: oneDNN's AMX kernels ran ~30 % slower on rows that
  // start mid-cache-line (tile loads and stores then touch two lines each).
  template <typename T>
  class Scratch {
   public:
    T* Get(size_t count);  // zero-filled when it grows; nullptr if memory is exhausted

   private:
    struct Free {
      void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, Free> data_;
    size_t capacity_ = 0;
  };

  int hidden_ = 0;
  int intermediate_ = 0;
  int threads_ = 1;
  int small_rows_ = 4;
  int gate_up_slice_ = kGateUpSlice;
  bool onednn_is_reference_ = false;
  bool widen_bf16_ = false;  // bf16 past small_rows_ on RunChunkWidened (no bf16 instructions)
  int quantized_rows_ = 0;   // quantized experts: RunChunkQuantized up to this many rows
  int int8_rows_ = 0;        // the same for experts on int8 activations (Expert::int8)
  int bf16_rows_ = 0;        // the same for experts on bf16 activations (Expert::bf16)
  bool int8_activations_ = false;  // Options::int8_activations
  bool bf16_activations_ = false;  // Options::bf16_activations
  bool own_amx_ = false;  // bf16 past small_rows_ on our AMX product (AMX CPUs, unless told not to)
  base::CpuIsa isa_ = base::CpuIsa::kScalar;
  std::string kernels_;  // what device() says of the kernels
  ResidentWeights resident_;
  std::vector<ExpertKey> hosted_;
  Options options_;
  // Immutable once built; shared with the backends Rebuild makes.
  absl::flat_hash_map<ExpertKey, std::shared_ptr<const Expert>> experts_;
  absl::Mutex mu_;
  MatmulCache matmuls_ ABSL_GUARDED_BY(mu_);
  // Grow-only scratch, reused across calls.
  Scratch<uint16_t> x_bf16_ ABSL_GUARDED_BY(mu_);
  Scratch<float> x_f32_ ABSL_GUARDED_BY(mu_);
  Scratch<float> gate_up_ ABSL_GUARDED_BY(mu_);
  Scratch<uint16_t> act_bf16_ ABSL_GUARDED_BY(mu_);
  Scratch<float> act_f32_ ABSL_GUARDED_BY(mu_);
  Scratch<float> y_ ABSL_GUARDED_BY(mu_);
  Int8Activations x_int8_ ABSL_GUARDED_BY(mu_);
  Bf16Activations x_bf16_rows_ ABSL_GUARDED_BY(mu_);
  // Widened weights by (n, k, layout), reused across calls.
  absl::flat_hash_map<std::tuple<int64_t, int64_t, int>, PackedWeight> widened_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::experts
