// tests/fuzz/safetensors_fuzz.cc
// A safetensors file of arbitrary bytes: Open (header length, JSON, dtypes, offsets), then a view
// of every tensor it accepted. The bytes go through an in-memory file (memfd), as Open maps paths.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "model/safetensors_reader.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("safetensors-fuzz", 0);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  auto file = moe::model::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    for (const auto& [name, entry] : (*file)->entries()) {
      auto tensor = (*file)->Get(name);
      if (tensor.ok() && tensor->num_elements() > 0) (void)tensor->ToF32();
    }
  }
  close(fd);
  return 0;
}
