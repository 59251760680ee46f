// experts/cpu/cpu_target.h
// Compiles a stretch of a file for one instruction-set level: every function defined between
// MOE_BEGIN_TARGET("avx2,fma") and MOE_END_TARGET() gets that target, as GCC's `#pragma GCC
// target` gives it (clang ignores that pragma and has `#pragma clang attribute` instead). Used by
// the per-level kernel files that share one body (cpu_int8_rows.h); include every header the
// stretch needs before MOE_BEGIN_TARGET, so that no header's inline function is compiled for it.
#pragma once

#define MOE_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define MOE_BEGIN_TARGET(isa) MOE_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define MOE_END_TARGET() MOE_PRAGMA(clang attribute pop)
#else
#define MOE_BEGIN_TARGET(isa) MOE_PRAGMA(GCC push_options) MOE_PRAGMA(GCC target(isa))
#define MOE_END_TARGET() MOE_PRAGMA(GCC pop_options)
#endif
