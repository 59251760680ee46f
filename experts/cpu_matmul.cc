// experts/cpu_matmul.cc
#include "experts/cpu_matmul.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace moe::experts {
namespace {

dnnl::memory::data_type OneDnnType(DType dtype) {
  return dtype == DType::kBF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace

int64_t MatmulCache::Bucket(int64_t rows) {
  if (rows <= 256) return (rows + 15) / 16 * 16;
  return (rows + 63) / 64 * 64;
}

MatmulCache::MatmulCache() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

absl::Status MatmulCache::Run(const PackedWeight& w, PostOp op, const void* x, int64_t ldx, int64_t rows, void* y,
                              DType y_dtype, int64_t ldy, const float* mul, int64_t ldm) {
  const Key key{w.n(), w.k(), static_cast<int>(w.dtype()), static_cast<int>(w.layout()), rows, ldx, ldy,
                static_cast<int>(op) * 4 + static_cast<int>(y_dtype), ldm};
  auto it = cache_.find(key);
  try {
    if (it == cache_.end()) {
      auto entry = std::make_unique<Entry>();
      const dnnl::memory::desc src({rows, w.k()}, OneDnnType(w.dtype()), {ldx, 1});
      const dnnl::memory::desc dst({rows, w.n()}, OneDnnType(y_dtype), {ldy, 1});
      const dnnl::memory::desc mul_desc({rows, w.n()}, dnnl::memory::data_type::f32, {std::max<int64_t>(ldm, w.n()), 1});
      dnnl::post_ops post;
      if (op == PostOp::kSilu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.0f, 0.0f);
      if (op == PostOp::kMulBy) post.append_binary(dnnl::algorithm::binary_mul, mul_desc);
      dnnl::primitive_attr attr;
      attr.set_post_ops(post);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, w.desc(), dst), attr, engine_);
      last_impl_ = pd.impl_info_str();
      entry->primitive = dnnl::matmul(pd);
      entry->src = dnnl::memory(src, engine_, DNNL_MEMORY_NONE);
      entry->weights = dnnl::memory(w.desc(), engine_, DNNL_MEMORY_NONE);
      entry->dst = dnnl::memory(dst, engine_, DNNL_MEMORY_NONE);
      entry->args = {{DNNL_ARG_SRC, entry->src}, {DNNL_ARG_WEIGHTS, entry->weights}, {DNNL_ARG_DST, entry->dst}};
      if (op == PostOp::kMulBy) {
        entry->mul = dnnl::memory(mul_desc, engine_, DNNL_MEMORY_NONE);
        entry->args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, entry->mul);
      }
      it = cache_.emplace(key, std::move(entry)).first;
    }
    Entry& e = *it->second;
    e.src.set_data_handle(const_cast<void*>(x));
    e.weights.set_data_handle(const_cast<void*>(w.data()));
    e.dst.set_data_handle(y);
    if (op == PostOp::kMulBy) e.mul.set_data_handle(const_cast<float*>(mul));
    e.primitive.execute(stream_, e.args);
    stream_.wait();
  } catch (const dnnl::error& error) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", rows, ", ", w.k(), "] x [", w.k(), ", ", w.n(),
                                            "] failed: ", error.what()));
  }
  return absl::OkStatus();
}

}  // namespace moe::experts
