// experts/safetensors_writer.cc
#include "experts/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moe::experts {

void SafetensorsWriter::Add(std::string name, Tensor tensor) {
  tensors_.emplace_back(std::move(name), std::move(tensor));
}

size_t SafetensorsWriter::num_bytes() const {
  size_t total = 0;
  for (const auto& [name, t] : tensors_) total += t.num_bytes();
  return total;
}

absl::Status SafetensorsWriter::Write(const std::string& path,
                                      const std::map<std::string, std::string>& metadata) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    header[name] = {{"dtype", std::string(DTypeName(t.dtype()))},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.num_bytes()}}};
    offset += t.num_bytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(path.c_str(), "wb"), &std::fclose);
  auto fail = [&path]() {
    return absl::InternalError(absl::StrCat("writing ", path, " failed: ", std::strerror(errno)));
  };
  if (!out) return fail();
  if (std::fwrite(&header_len, 8, 1, out.get()) != 1) return fail();
  if (std::fwrite(text.data(), 1, text.size(), out.get()) != text.size()) return fail();
  for (const auto& [name, t] : tensors_) {
    if (t.num_bytes() > 0 &&
        std::fwrite(t.raw_data(), 1, t.num_bytes(), out.get()) != t.num_bytes()) {
      return fail();
    }
  }
  if (std::fflush(out.get()) != 0) return fail();
  return absl::OkStatus();
}

}  // namespace moe::experts
