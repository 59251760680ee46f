// base/cpu_features.cc
#include "base/cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace moe::base {
namespace {

constexpr std::array<absl::string_view, 6> kIsaNames = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"};

struct Regs {
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs CpuId(uint32_t leaf, uint32_t subleaf) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) return Regs{};
  return r;
}

uint64_t XGetBv() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool Bit(uint32_t value, int bit) { return (value >> bit) & 1u; }

std::string BrandString() {
  if (CpuId(0x80000000u, 0).a < 0x80000004u) return "unknown CPU";
  char brand[49] = {};
  for (uint32_t i = 0; i < 3; ++i) {
    const Regs r = CpuId(0x80000002u + i, 0);
    std::memcpy(brand + 16 * i, &r, 16);
  }
  return std::string(absl::StripAsciiWhitespace(brand));
}

}  // namespace

absl::string_view CpuIsaName(CpuIsa isa) { return kIsaNames[static_cast<int>(isa)]; }

absl::StatusOr<CpuIsa> ParseCpuIsa(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (size_t i = 0; i < kIsaNames.size(); ++i) {
    if (lower == kIsaNames[i]) return static_cast<CpuIsa>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU ISA '", name, "'; expected scalar, avx2, avx512, avx512_vnni, avx512_bf16 or amx"));
}

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
  f.model = BrandString();
  const Regs l1 = CpuId(1, 0);
  const bool osxsave = Bit(l1.c, 27);
  const uint64_t xcr0 = osxsave ? XGetBv() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_tiles = (xcr0 & 0x60000) == 0x60000;    // XTILECFG, XTILEDATA
  const Regs l7 = CpuId(7, 0);
  const Regs l7s1 = CpuId(7, 1);
  f.avx2_fma = os_ymm && Bit(l1.c, 12) && Bit(l7.b, 5) && Bit(l1.c, 29);  // FMA, AVX2, F16C
  f.avx512 = os_zmm && Bit(l7.b, 16) && Bit(l7.b, 17) && Bit(l7.b, 30) && Bit(l7.b, 31);
  f.avx512_vnni = f.avx512 && Bit(l7.c, 11);
  f.avx512_bf16 = f.avx512 && Bit(l7s1.a, 5);
  f.amx_bf16 = f.avx512_bf16 && os_tiles && Bit(l7.d, 22) && Bit(l7.d, 24);
  return f;
}

CpuIsa BestIsa(const CpuFeatures& f) {
  if (f.amx_bf16 && f.avx512_vnni) return CpuIsa::kAmx;
  // (A CPU with BF16 but no VNNI — none is known — takes the level below both.)
  if (f.avx512_bf16 && f.avx512_vnni) return CpuIsa::kAvx512Bf16;
  if (f.avx512_vnni) return CpuIsa::kAvx512Vnni;
  if (f.avx512) return CpuIsa::kAvx512;
  if (f.avx2_fma) return CpuIsa::kAvx2;
  return CpuIsa::kScalar;
}

absl::StatusOr<CpuIsaChoice> ChooseCpuIsa(const CpuFeatures& features, absl::string_view cap,
                                          bool amx_permitted) {
  CpuIsaChoice choice;
  const CpuIsa best = BestIsa(features);
  choice.isa = best;
  if (!cap.empty()) {
    absl::StatusOr<CpuIsa> wanted = ParseCpuIsa(cap);
    if (!wanted.ok()) return wanted.status();
    if (*wanted < best) {
      choice.isa = *wanted;
      choice.fallback = absl::StrCat("capped to ", CpuIsaName(*wanted), " by MOE_CPU_ISA (CPU has ",
                                     CpuIsaName(best), ")");
    } else if (*wanted > best) {
      choice.fallback = absl::StrCat("MOE_CPU_ISA=", CpuIsaName(*wanted), " not supported by this CPU; using ",
                                     CpuIsaName(best));
    }
  }
  if (choice.isa == CpuIsa::kAmx && !amx_permitted) {
    choice.isa = CpuIsa::kAvx512Bf16;
    choice.fallback = "AMX permission refused by the kernel (arch_prctl); using avx512_bf16";
  }
  return choice;
}

bool RequestAmxPermission() {
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

}  // namespace moe::base
