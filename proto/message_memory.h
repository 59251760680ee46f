// proto/message_memory.h
// Keeps freed message buffers in the process for reuse. glibc hands blocks above its mmap
// threshold (128 KiB at start, adapting up to 32 MiB) straight back to the kernel when freed, so
// the next multi-megabyte message gRPC serializes or parses is written into fresh pages and
// page-faults every 4 KiB: measured with moe-bench-codec (2026-11-22), serializing a 4 MB
// ExpertRequest took 1.77 ms against 0.13 ms with freed memory kept, parsing 64 MB 63 ms against
// 7 ms. Called first thing by moe-router, moe-expert and the client programs; process-wide and
// idempotent; freed memory stays in the heap (RSS keeps its peak).
#pragma once

namespace moe::proto {

// Raises glibc's mmap and trim thresholds (mallopt) so large blocks come from and return to the
// heap. Returns false where the C library refused (the process still works, only slower).
bool KeepFreedMessageMemory();

}  // namespace moe::proto
