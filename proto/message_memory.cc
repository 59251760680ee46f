// proto/message_memory.cc
#include "proto/message_memory.h"

#include <malloc.h>

#include <climits>

namespace moe::proto {

bool KeepFreedMessageMemory() {
  // Blocks up to 1 GiB come from the heap rather than from mmap; up to 2 GiB of free memory at
  // the top of the heap stays mapped instead of being trimmed; the heap grows 64 MiB at a time.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  const bool pad_ok = mallopt(M_TOP_PAD, 64 << 20) == 1;
  return mmap_ok && trim_ok && pad_ok;
}

}  // namespace moe::proto
