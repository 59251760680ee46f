// experts/cpu/cpu_packed_weight.cc
#include "experts/cpu/cpu_packed_weight.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace moe::experts {
namespace {

int64_t RoundUp(int64_t value, int64_t to) { return (value + to - 1) / to * to; }

}  // namespace

absl::Status PackedWeight::Allocate() {
  // Weights of a MiB and more go on 2 MiB pages where Linux allows it (THP "madvise"): the
  // products walk them in tiles, and 4 KiB pages cost a TLB miss every few tiles.
  constexpr int64_t kHugePage = int64_t{2} << 20;
  const bool huge = static_cast<int64_t>(bytes_) >= kHugePage / 2;
  const int64_t alignment = huge ? kHugePage : 64;
  const int64_t allocated = RoundUp(static_cast<int64_t>(bytes_), alignment);
  data_.reset(std::aligned_alloc(alignment, allocated));
  if (data_ == nullptr) return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes_, " bytes"));
  if (huge) madvise(data_.get(), allocated, MADV_HUGEPAGE);  // a hint: refusal changes nothing
  std::memset(data_.get(), 0, bytes_);
  return absl::OkStatus();
}

absl::StatusOr<PackedWeight> PackedWeight::PlainF32(int64_t n, int64_t k, PackedLayout layout) {
  if (n <= 0 || k <= 0 || layout == PackedLayout::kBlocked) {
    return absl::InvalidArgumentError(absl::StrCat("cannot make a plain [", n, ", ", k, "] weight"));
  }
  PackedWeight w;
  w.dtype_ = model::DType::kF32;
  w.layout_ = layout;
  w.n_ = n;
  w.k_ = k;
  w.n_pad_ = layout == PackedLayout::kPlainKN ? RoundUp(n, kTile) : n;
  w.k_pad_ = k;
  w.bytes_ = static_cast<size_t>(w.k_pad_ * w.n_pad_) * sizeof(float);
  RETURN_IF_ERROR(w.Allocate());
  return w;
}

void PackedWeight::WidenInto(PackedWeight& dst, int threads) const {
  // Tile t holds columns [64t, 64t + 64), K in pairs: element (k, j) at
  // t·k_pad·64 + (k / 2)·128 + (j mod 64)·2 + k mod 2. A pair of bf16 read as one 32-bit word
  // gives row k in its low half and row k + 1 in its high half; a bf16 is the top half of its f32.
  const auto* src = static_cast<const uint32_t*>(data_.get());
  auto* out = static_cast<uint32_t*>(dst.data_.get());
  const int64_t tiles = n_pad_ / kTile, pairs = (k_ + 1) / 2, ld = dst.n_pad_;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < pairs; ++p) {
    uint32_t* row0 = out + 2 * p * ld;
    uint32_t* row1 = 2 * p + 1 < k_ ? row0 + ld : nullptr;
    for (int64_t t = 0; t < tiles; ++t) {
      const uint32_t* in = src + t * (k_pad_ / 2) * kTile + p * kTile;
      uint32_t* o0 = row0 + t * kTile;
      for (int64_t j = 0; j < kTile; ++j) o0[j] = in[j] << 16;
      if (row1 == nullptr) continue;
      uint32_t* o1 = row1 + t * kTile;
      for (int64_t j = 0; j < kTile; ++j) o1[j] = in[j] & 0xFFFF0000u;
    }
  }
}

dnnl::memory::desc PackedWeight::desc() const {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  if (layout_ == PackedLayout::kPlainKN) return dnnl::memory::desc({k_, n_}, dt::f32, {n_pad_, 1});
  if (layout_ == PackedLayout::kPlainNK) return dnnl::memory::desc({k_, n_}, dt::f32, {1, k_pad_});
  return dtype_ == model::DType::kBF16 ? dnnl::memory::desc({k_, n_}, dt::bf16, tag::BA16a64b2a)
                                : dnnl::memory::desc({k_, n_}, dt::f32, tag::BA16a64b);
}

absl::StatusOr<PackedWeight> PackedWeight::Pack(const void* src, model::DType src_dtype, int64_t n, int64_t k, model::DType dtype,
                                                PackedLayout layout) {
  if (n <= 0 || k <= 0) return absl::InvalidArgumentError(absl::StrCat("cannot pack a [", n, ", ", k, "] weight"));
  if (dtype == model::DType::kF16) return absl::InvalidArgumentError("the CPU kernels keep weights as bf16 or f32, not f16");
  if (dtype == model::DType::kBF16 && layout != PackedLayout::kBlocked) {
    return absl::InvalidArgumentError("bf16 weights are packed blocked only");
  }
  PackedWeight w;
  w.dtype_ = dtype;
  w.layout_ = layout;
  w.n_ = n;
  w.k_ = k;
  w.n_pad_ = RoundUp(n, kTile);
  w.k_pad_ = k;
  dnnl::memory::desc packed = w.desc();
  // oneDNN's padding of the blocked formats (bf16 blocks K by 32, f32 by 16).
  if (layout == PackedLayout::kBlocked) {
    w.k_pad_ = packed.data.padded_dims[0];
    if (packed.data.padded_dims[1] != w.n_pad_) {
      return absl::InternalError(absl::StrCat("oneDNN pads N=", n, " to ", packed.data.padded_dims[1], ", not ", w.n_pad_));
    }
  }
  w.bytes_ = packed.get_size();
  RETURN_IF_ERROR(w.Allocate());

  // The source as oneDNN sees it: W [n, k] row-major is the K×N matrix with strides {1, k}.
  // f16 (and f32 → bf16) go through an f32 copy; bf16 → bf16 and f32 → f32 are reordered as is.
  std::vector<float> widened;
  const void* plain = src;
  model::DType plain_dtype = src_dtype;
  if (src_dtype == model::DType::kF16 || src_dtype != dtype) {
    widened.resize(static_cast<size_t>(n * k));
    model::ConvertToF32(src_dtype, src, widened.data(), widened.size());
    plain = widened.data();
    plain_dtype = model::DType::kF32;
  }
  const auto dt_of = [](model::DType d) {
    return d == model::DType::kBF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  };
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    dnnl::memory from(dnnl::memory::desc({k, n}, dt_of(plain_dtype), {1, k}), engine, const_cast<void*>(plain));
    dnnl::memory to(packed, engine, w.data_.get());
    dnnl::reorder(from, to).execute(stream, from, to);
    stream.wait();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN could not pack a [", n, ", ", k, "] weight: ", e.what()));
  }
  return w;
}

}  // namespace moe::experts
