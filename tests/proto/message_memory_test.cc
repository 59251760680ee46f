// tests/proto/message_memory_test.cc
// KeepFreedMessageMemory: after it, a freed multi-megabyte block stays in the heap (mallinfo2's
// free bytes grow by at least its size) instead of going back to the kernel, and a block of the
// same size is served again from it.
#include "proto/message_memory.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace moe::proto {
namespace {

TEST(MessageMemoryTest, FreedLargeBlocksStayForReuse) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer replaces glibc's malloc: mallopt and mallinfo2 do not apply";
#endif
  ASSERT_TRUE(KeepFreedMessageMemory());
  ASSERT_TRUE(KeepFreedMessageMemory());  // idempotent
  constexpr size_t kBytes = 24 << 20;
  const size_t free_before = mallinfo2().fordblks;
  const size_t mapped_before = mallinfo2().hblkhd;
  char* block = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBytes);  // touch it, as a message would
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before) << "the block came from mmap, not the heap";
  std::free(block);
  EXPECT_GE(mallinfo2().fordblks, free_before + kBytes) << "the freed block left the heap";
  char* again = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before);
  std::free(again);
}

}  // namespace
}  // namespace moe::proto
