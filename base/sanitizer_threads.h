// base/sanitizer_threads.h
// How many OpenMP threads a compute loop may use in this build: what was asked for, except under
// ThreadSanitizer, where it is one. Debian's libgomp is not instrumented, so TSan cannot see an
// OpenMP region's fork/join and would report every access the team shares; what TSan is for —
// our own threads, queues and gRPC callbacks — is unchanged, and the multi-threaded compute paths
// are checked by the plain build's tests. Used by the CPU backend and the benchmarks' peers.
// Thread-safe (pure).
#pragma once

namespace moe::base {

constexpr int ThreadsForThisBuild(int requested) {
#if defined(__SANITIZE_THREAD__)
  return requested > 0 ? 1 : requested;
#else
  return requested;
#endif
}

}  // namespace moe::base
