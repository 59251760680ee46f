// model/safetensors_writer.cc
#include "model/safetensors_writer.h"

#include <algorithm>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moe::model {

void SafetensorsWriter::Add(std::string name, Tensor tensor) {
  std::string dtype(DTypeName(tensor.dtype()));
  std::vector<int64_t> shape = tensor.shape();
  tensors_.push_back({std::move(name), std::move(dtype), std::move(shape), std::move(tensor), {}});
}

void SafetensorsWriter::AddRaw(std::string name, std::string dtype, std::vector<int64_t> shape,
                               std::vector<uint8_t> bytes) {
  tensors_.push_back({std::move(name), std::move(dtype), std::move(shape), Tensor(), std::move(bytes)});
}

namespace {

// Bytes per element of a safetensors dtype name (1 for the byte-sized and unknown ones).
size_t ElementBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  return 1;
}

}  // namespace

size_t SafetensorsWriter::num_bytes() const {
  size_t total = 0;
  for (const Entry& e : tensors_) total += e.bytes();
  return total;
}

absl::Status SafetensorsWriter::Write(const std::string& path,
                                      const std::map<std::string, std::string>& metadata) const {
  // Widest elements first (as the safetensors library orders them): with the header padded to 8
  // bytes, every tensor then starts aligned to its element size (no holes are allowed).
  std::vector<const Entry*> order;
  for (const Entry& e : tensors_) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(),
                   [](const Entry* a, const Entry* b) { return ElementBytes(a->dtype) > ElementBytes(b->dtype); });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry* entry : order) {
    const Entry& e = *entry;
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
  for (const Entry* e : order) {
    if (e->bytes() > 0 && std::fwrite(e->data(), 1, e->bytes(), out.get()) != e->bytes()) return fail();
  }
  if (std::fflush(out.get()) != 0) return fail();
  return absl::OkStatus();
}

}  // namespace moe::model
