// model/safetensors_reader.cc
#include "model/safetensors_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace moe::model {
namespace {

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

absl::Status Corrupt(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("safetensors file ", path, ": ", what));
}

}  // namespace

size_t SafetensorsDTypeSize(absl::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "BOOL" || dtype == "U8" || dtype == "I8" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::NotFoundError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  file->map_size_ = static_cast<size_t>(st.st_size);
  if (file->map_size_ > 0) {
    void* map = ::mmap(nullptr, file->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("mmap of ", path, " failed: ", std::strerror(errno)));
    }
    file->map_ = static_cast<const uint8_t*>(map);
  }
  ::close(fd);
  RETURN_IF_ERROR(file->Parse());
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::Status SafetensorsFile::Parse() {
  if (map_size_ < 8) {
    return Corrupt(path_, absl::StrCat("truncated: ", map_size_, " bytes, need at least 8"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, map_, 8);  // little-endian, as every host we run on
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(path_, absl::StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  if (header_len > map_size_ - 8) {
    return Corrupt(path_, absl::StrCat("header length ", header_len, " is longer than the file (",
                                       map_size_ - 8, " bytes after the length)"));
  }
  data_ = map_ + 8 + header_len;
  data_size_ = map_size_ - 8 - header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(map_ + 8),
                                   reinterpret_cast<const char*>(map_ + 8 + header_len));
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(path_, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return Corrupt(path_, "header is not a JSON object");

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return Corrupt(path_, "__metadata__ is not an object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) return Corrupt(path_, absl::StrCat("__metadata__.", key, " is not a string"));
        metadata_[key] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      return Corrupt(path_, absl::StrCat(where, " needs dtype, shape and data_offsets"));
    }
    const auto& dtype = value["dtype"];
    const auto& shape = value["shape"];
    const auto& offsets = value["data_offsets"];
    if (!dtype.is_string()) return Corrupt(path_, absl::StrCat(where, ": dtype is not a string"));
    Entry entry;
    entry.dtype = dtype.get<std::string>();
    const size_t elem = SafetensorsDTypeSize(entry.dtype);
    if (elem == 0) return Corrupt(path_, absl::StrCat(where, ": unknown dtype '", entry.dtype, "'"));
    if (!shape.is_array()) return Corrupt(path_, absl::StrCat(where, ": shape is not an array"));
    uint64_t count = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) {
        return Corrupt(path_, absl::StrCat(where, ": shape entries must be non-negative integers"));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / dim) {
        return Corrupt(path_, absl::StrCat(where, ": shape overflows"));
      }
      count *= dim;
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      return Corrupt(path_, absl::StrCat(where, ": data_offsets must be two non-negative integers"));
    }
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size_) {
      return Corrupt(path_, absl::StrCat(where, ": data_offsets [", entry.begin, ", ", entry.end,
                                         ") out of bounds of the ", data_size_, "-byte data section"));
    }
    if (entry.end - entry.begin != count * elem) {
      return Corrupt(path_, absl::StrCat(where, ": data_offsets span ", entry.end - entry.begin,
                                         " bytes but ", entry.dtype, " of this shape needs ",
                                         count * elem));
    }
    entries_.emplace(name, std::move(entry));
  }

  std::vector<std::pair<uint64_t, const std::string*>> ranges;
  for (const auto& [name, entry] : entries_) {
    if (entry.end > entry.begin) ranges.emplace_back(entry.begin, &name);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Entry& prev = entries_.at(*ranges[i - 1].second);
    if (ranges[i].first < prev.end) {
      return Corrupt(path_, absl::StrCat("tensors '", *ranges[i - 1].second, "' and '",
                                         *ranges[i].second, "' overlap"));
    }
  }
  return absl::OkStatus();
}

bool SafetensorsFile::Contains(absl::string_view name) const {
  return entries_.find(std::string(name)) != entries_.end();
}

absl::StatusOr<const uint8_t*> SafetensorsFile::RawBytes(absl::string_view name, Entry* entry) const {
  auto it = entries_.find(std::string(name));
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in ", path_));
  *entry = it->second;
  return data_ + it->second.begin;
}

absl::StatusOr<Tensor> SafetensorsFile::Get(absl::string_view name) const {
  auto it = entries_.find(std::string(name));
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in ", path_));
  }
  const Entry& entry = it->second;
  std::optional<DType> dtype = ParseDType(entry.dtype);
  if (!dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' in ", path_, " has dtype ", entry.dtype,
                     ", which moe-serve cannot serve (supported: F32, BF16, F16)"));
  }
  const uint8_t* bytes = data_ + entry.begin;
  if (reinterpret_cast<uintptr_t>(bytes) % DTypeSize(*dtype) != 0) {
    // A file whose header is not padded (the safetensors library pads it to 8 bytes; others may
    // not): reading its elements in place would be misaligned, so this tensor is copied.
    Tensor aligned = Tensor::Zeros(*dtype, entry.shape);
    std::memcpy(aligned.mutable_raw_data(), bytes, entry.end - entry.begin);
    return aligned;
  }
  return Tensor::Borrow(*dtype, entry.shape, bytes, shared_from_this());
}

}  // namespace moe::model
