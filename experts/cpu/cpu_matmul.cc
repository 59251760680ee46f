// experts/cpu/cpu_matmul.cc
#include "experts/cpu/cpu_matmul.h"

#include "absl/strings/str_cat.h"

namespace moe::experts {
namespace {

dnnl::memory::data_type OneDnnType(model::DType dtype) {
  return dtype == model::DType::kBF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace

int64_t MatmulCache::Bucket(int64_t rows) {
  const int64_t step = rows <= 256 ? 16 : 32;
  return (rows + step - 1) / step * step;
}

MatmulCache::MatmulCache() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

absl::Status MatmulCache::Run(const PackedWeight& w, const void* x, int64_t rows, float* y) {
  const Key key{w.n(), w.k(), static_cast<int>(w.dtype()), static_cast<int>(w.layout()), rows};
  auto it = cache_.find(key);
  try {
    if (it == cache_.end()) {
      auto entry = std::make_unique<Entry>();
      const dnnl::memory::desc src({rows, w.k()}, OneDnnType(w.dtype()), dnnl::memory::format_tag::ab);
      const dnnl::memory::desc dst({rows, w.n()}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, w.desc(), dst), engine_);
      last_impl_ = pd.impl_info_str();
      entry->primitive = dnnl::matmul(pd);
      entry->src = dnnl::memory(src, engine_, DNNL_MEMORY_NONE);
      entry->weights = dnnl::memory(w.desc(), engine_, DNNL_MEMORY_NONE);
      entry->dst = dnnl::memory(dst, engine_, DNNL_MEMORY_NONE);
      entry->args = {{DNNL_ARG_SRC, entry->src}, {DNNL_ARG_WEIGHTS, entry->weights}, {DNNL_ARG_DST, entry->dst}};
      it = cache_.emplace(key, std::move(entry)).first;
    }
    Entry& e = *it->second;
    e.src.set_data_handle(const_cast<void*>(x));
    e.weights.set_data_handle(const_cast<void*>(w.data()));
    e.dst.set_data_handle(y);
    e.primitive.execute(stream_, e.args);
    stream_.wait();
  } catch (const dnnl::error& error) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", rows, ", ", w.k(), "] x [", w.k(), ", ", w.n(),
                                            "] failed: ", error.what()));
  }
  return absl::OkStatus();
}

}  // namespace moe::experts
