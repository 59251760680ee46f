// experts/cpu/cpu_amx_product.cc
#include "experts/cpu/cpu_amx_product.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

namespace moe::experts {
namespace {

constexpr int64_t kTile = PackedWeight::kTile;  // 64 columns a packed tile
constexpr int64_t kKStep = 32;                  // K of one A tile / one TDPBF16PS
constexpr int64_t kLine = 64;

// The tile configuration every tile of ours uses: 16 rows of 64 bytes (A: 16×32 bf16, B: 16 k
// pairs × 16 columns, C: 16×16 f32).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Spreads the prefetch of the next weight panel over the steps of the current one.
struct Prefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t per_step = 0;
  inline void Step() {
    for (int64_t i = 0; i < per_step && next < end; ++i, next += kLine) _mm_prefetch(next, _MM_HINT_T1);
  }
};

// C[16·R rows, 32 columns] (+)= A[16·R, kblocks·32] · B, where `b` points at the packed weight's
// first k block of these 32 columns (row stride 256 bytes inside a block, 4 KiB between blocks).
template <int R>
__attribute__((target("amx-tile,amx-bf16"))) void Block(const uint16_t* a, int64_t lda, const uint16_t* b,
                                                        int64_t kblocks, float* c, int64_t ldc, bool accumulate,
                                                        Prefetch& pf) {
  const int64_t a_bytes = lda * 2, c_bytes = ldc * 4;
  constexpr int64_t kBRowBytes = kTile * 2 * 2;   // a k pair of 64 columns
  constexpr int64_t kBBlock = kKStep * kTile;     // elements per 32-k block of a tile
  if (accumulate) {
    _tile_loadd(0, c, c_bytes);
    _tile_loadd(1, c + 16, c_bytes);
    if constexpr (R == 2) {
      _tile_loadd(2, c + 16 * ldc, c_bytes);
      _tile_loadd(3, c + 16 * ldc + 16, c_bytes);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (R == 2) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    _tile_loadd(4, a + kb * kKStep, a_bytes);
    _tile_loadd(6, b + kb * kBBlock, kBRowBytes);
    _tile_loadd(7, b + kb * kBBlock + 32, kBRowBytes);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if constexpr (R == 2) {
      _tile_loadd(5, a + 16 * lda + kb * kKStep, a_bytes);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    pf.Step();
  }
  _tile_stored(0, c, c_bytes);
  _tile_stored(1, c + 16, c_bytes);
  if constexpr (R == 2) {
    _tile_stored(2, c + 16 * ldc, c_bytes);
    _tile_stored(3, c + 16 * ldc + 16, c_bytes);
  }
}

__attribute__((target("amx-tile,amx-bf16"))) void ConfigureTiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.colsb[t] = 64;
  }
  // GCC 12's _tile_loadconfig does not tell the compiler it reads memory, which then drops the
  // stores above as dead: this barrier keeps them.
  __asm__ __volatile__("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

__attribute__((target("amx-tile"))) void ReleaseTiles() { _tile_release(); }

// One thread's share: column tiles [t0, t1) of every row.
void ProductTiles(const PackedWeight& w, const uint16_t* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                  int64_t t0, int64_t t1, int64_t k_block) {
  const auto* base = static_cast<const uint16_t*>(w.data());
  const int64_t k_pad = w.k_pad();
  const int64_t m_blocks = (rows + 31) / 32;
  const auto panel = [&](int64_t t, int64_t k0) { return base + t * w.tile_stride() + k0 * kTile; };
  for (int64_t k0 = 0; k0 < k_pad; k0 += k_block) {
    const int64_t k1 = std::min(k_pad, k0 + k_block);
    const int64_t kblocks = (k1 - k0) / kKStep;
    for (int64_t t = t0; t < t1; ++t) {
      // The panel after this one: the next tile of this K block, else the first of the next.
      Prefetch pf;
      const bool last = t + 1 == t1;
      if (!last || k1 < k_pad) {
        const int64_t nk0 = last ? k1 : k0, nk1 = last ? std::min(k_pad, k1 + k_block) : k1;
        pf.next = reinterpret_cast<const char*>(panel(last ? t0 : t + 1, nk0));
        pf.end = pf.next + (nk1 - nk0) * kTile * 2;
        const int64_t lines = (pf.end - pf.next) / kLine, steps = m_blocks * 2 * kblocks;
        pf.per_step = (lines + steps - 1) / steps;
      }
      const uint16_t* b = panel(t, k0);
      for (int64_t m = 0; m < rows; m += 32) {
        const uint16_t* a = x + m * ldx + k0;
        float* c = y + m * ldy + t * kTile;
        for (int half = 0; half < 2; ++half) {
          if (rows - m >= 32) {
            Block<2>(a, ldx, b + half * 64, kblocks, c + half * 32, ldy, k0 > 0, pf);
          } else {
            Block<1>(a, ldx, b + half * 64, kblocks, c + half * 32, ldy, k0 > 0, pf);
          }
        }
      }
    }
  }
}

}  // namespace

void AmxProduct(const PackedWeight& w, const uint16_t* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                int threads, int64_t k_block) {
  const int64_t tiles = w.n_pad() / kTile;
  int64_t kb = std::max<int64_t>(kKStep, k_block / kKStep * kKStep);
  if (kb < w.k_pad()) {  // equal blocks: 3584 in two of 1792, not 1024 + 1024 + 1024 + 512
    const int64_t blocks = (w.k_pad() + kb - 1) / kb;
    kb = ((w.k_pad() + blocks - 1) / blocks + kKStep - 1) / kKStep * kKStep;
  }
  // A product of under ~4 MFLOP (a few µs of AMX) runs on one thread: waking a second costs more.
  const bool small = 2 * rows * w.n_pad() * w.k_pad() < (int64_t{4} << 20);
  const int n = small ? 1 : static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tiles)));
#pragma omp parallel num_threads(n)
  {
    const int64_t me = omp_get_thread_num(), all = omp_get_num_threads();
    const int64_t t0 = tiles * me / all, t1 = tiles * (me + 1) / all;
    if (t0 < t1) {
      ConfigureTiles();
      ProductTiles(w, x, ldx, rows, y, ldy, t0, t1, kb);
      ReleaseTiles();
    }
  }
}

}  // namespace moe::experts
