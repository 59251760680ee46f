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
  std::string dtype(DTypeName(tensor.dtype()));
  std::vector<int64_t> shape = tensor.shape();
  tensors_.push_back({std::move(name), std::move(dtype), std::move(shape), std::move(tensor), {}});
}

void SafetensorsWriter::AddRaw(std::string name, std::string dtype, std::vector<int64_t> shape,
                               std::vector<uint8_t> bytes) {
  tensors_.push_back({std::move(name), std::move(dtype), std::move(shape), Tensor(), std::move(bytes)});
}

size_t SafetensorsWriter::num_bytes() const {
  size_t total = 0;
  for (const Entry& e : tensors_) total += e.bytes();
  return total;
}

absl::Status SafetensorsWriter::Write(const std::string& path,
                                      const std::map<std::string, std::string>& metadata) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : tensors_) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes()}}};
    offset += e.bytes();
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
  for (const Entry& e : tensors_) {
    if (e.bytes() > 0 && std::fwrite(e.data(), 1, e.bytes(), out.get()) != e.bytes()) return fail();
  }
  if (std::fflush(out.get()) != 0) return fail();
  return absl::OkStatus();
}

}  // namespace moe::experts
