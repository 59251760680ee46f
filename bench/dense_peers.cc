// bench/dense_peers.cc
#include "bench/dense_peers.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/sanitizer_threads.h"

#include "dnnl.hpp"

namespace moe::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Sums n values 128 bytes at a time; with `prefetch_bytes` > 0 also prefetches that far ahead
// (as our small-rows kernels do: on the 2-core Xeon of 2026-12-01 that read 26-28 GB/s against
// 21-25 without).
__attribute__((target("avx2"))) uint64_t SumAvx2(const uint64_t* p, size_t n, size_t prefetch_bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  const char* ahead = reinterpret_cast<const char*>(p) + prefetch_bytes;
  for (; i + 16 <= n; i += 16) {
    if (prefetch_bytes > 0) {
      _mm_prefetch(ahead + i * sizeof(uint64_t), _MM_HINT_T0);
      _mm_prefetch(ahead + i * sizeof(uint64_t) + 64, _MM_HINT_T0);
    }
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

DenseResult DenseMatmul(int64_t m, int64_t k, int64_t n, bool bf16, int repeats) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc c({m, n}, dt::f32, tag::ab);
  auto describe = [&](dt type) {
    const dnnl::memory::desc a({m, k}, type, tag::ab), b_any({k, n}, type, tag::any);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b_any, c), engine);
  };
  // oneDNN has no bf16 matmul on a CPU without AVX512-BF16/AMX (or capped below them): the
  // ceiling there is the f32 GEMM, which is what a bf16 kernel must reach by widening weights.
  std::string fallback;
  dnnl::matmul::primitive_desc pd;
  try {
    pd = describe(bf16 ? dt::bf16 : dt::f32);
  } catch (const dnnl::error& e) {
    if (!bf16) throw;
    fallback = std::string("no bf16 matmul on this CPU (") + e.what() + "): f32 ";
    bf16 = false;
    pd = describe(dt::f32);
  }
  const dnnl::memory::desc a({m, k}, bf16 ? dt::bf16 : dt::f32, tag::ab);
  dnnl::memory am(a, engine), bm(pd.weights_desc(), engine), cm(c, engine);
  // Random, never-zero inputs (bit patterns of small normals).
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 0.5f);
  auto fill = [&](dnnl::memory& mem, size_t elements) {
    if (bf16) {
      auto* p = static_cast<uint16_t*>(mem.get_data_handle());
      for (size_t i = 0; i < elements; ++i) {
        const float v = d(rng);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        p[i] = static_cast<uint16_t>(bits >> 16);
      }
    } else {
      auto* p = static_cast<float*>(mem.get_data_handle());
      for (size_t i = 0; i < elements; ++i) p[i] = d(rng);
    }
  };
  fill(am, static_cast<size_t>(m * k));
  fill(bm, pd.weights_desc().get_size() / (bf16 ? 2 : 4));
  dnnl::matmul prim(pd);
  auto run = [&] {
    prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  };
  run();
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const double t0 = Now();
    run();
    t.push_back(Now() - t0);
  }
  std::sort(t.begin(), t.end());
  DenseResult r;
  r.median_s = t[t.size() / 2];
  r.gflops = 2.0 * m * k * n / r.median_s / 1e9;
  r.impl = fallback + pd.impl_info_str();
  r.bf16 = bf16;
  return r;
}

double StreamReadBandwidth(size_t bytes, int threads, int repeats) {
  threads = base::ThreadsForThisBuild(threads);  // one under TSan (base/sanitizer_threads.h)
  const size_t n = bytes / sizeof(uint64_t);
  auto* p = static_cast<uint64_t*>(std::aligned_alloc(64, n * sizeof(uint64_t)));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) p[i] = i * 2654435761u;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < 2 * std::max(1, repeats); ++r) {
    const size_t prefetch = r % 2 == 0 ? 0 : 2048;  // plain loads and prefetched: the better counts
    const double t0 = Now();
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = (n / nt) & ~size_t{15};
      const size_t begin = t * chunk, end = t == nt - 1 ? n : begin + chunk;
      total += SumAvx2(p + begin, end - begin, prefetch);
    }
    sink = sink + total;
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / (Now() - t0));
  }
  std::free(p);
  return best;
}

}  // namespace moe::bench
