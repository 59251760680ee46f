// model/gguf/gguf_file.cc
#include "model/gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace moe::model {
namespace {

constexpr GgmlType kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 4;
constexpr int kMaxDims = 4;

// A bounds-checked little-endian cursor over the header.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  template <typename T>
  bool Read(T* out) {
    if (left() < sizeof(T)) return false;
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(std::string* out) {
    uint64_t n;
    if (!Read(&n) || n > left()) return false;
    out->assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > left()) return false;
    pos_ += n;
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Bytes of one scalar of GGUF value type `t`, or 0 (string, array, unknown).
size_t ScalarBytes(uint32_t t) {
  switch (t) {
    case 0:
    case 1:
    case 7:
      return 1;
    case 2:
    case 3:
      return 2;
    case 4:
    case 5:
    case 6:
      return 4;
    case 10:
    case 11:
    case 12:
      return 8;
    default:
      return 0;
  }
}

bool ReadValue(Cursor& in, uint32_t type, int depth, nlohmann::json* out, std::string* error) {
  const auto scalar = [&](auto v) {
    if (!in.Read(&v)) return false;
    *out = v;
    return true;
  };
  switch (type) {
    case 0:
      return scalar(uint8_t{});
    case 1:
      return scalar(int8_t{});
    case 2:
      return scalar(uint16_t{});
    case 3:
      return scalar(int16_t{});
    case 4:
      return scalar(uint32_t{});
    case 5:
      return scalar(int32_t{});
    case 6:
      return scalar(float{});
    case 10:
      return scalar(uint64_t{});
    case 11:
      return scalar(int64_t{});
    case 12:
      return scalar(double{});
    case 7: {
      uint8_t b;
      if (!in.Read(&b)) return false;
      if (b > 1) {
        *error = absl::StrCat("a bool of value ", b);
        return false;
      }
      *out = b == 1;
      return true;
    }
    case 8: {
      std::string s;
      if (!in.ReadString(&s)) return false;
      *out = std::move(s);
      return true;
    }
    case 9: {
      uint32_t elem;
      uint64_t count;
      if (!in.Read(&elem) || !in.Read(&count)) return false;
      if (depth >= kMaxArrayDepth) {
        *error = "arrays nested too deep";
        return false;
      }
      // Every element takes at least one byte (a string its 8-byte length): a count past what is
      // left is a lie, refused before allocating anything.
      const size_t least = elem == 8 ? 8 : elem == 9 ? 12 : ScalarBytes(elem);
      if (least == 0) {
        *error = absl::StrCat("an array of unknown value type ", elem);
        return false;
      }
      if (count > in.left() / least) {
        *error = absl::StrCat("an array of ", count, " elements past the end of the file");
        return false;
      }
      *out = nlohmann::json::array();
      out->get_ref<nlohmann::json::array_t&>().reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        nlohmann::json v;
        if (!ReadValue(in, elem, depth + 1, &v, error)) return false;
        out->push_back(std::move(v));
      }
      return true;
    }
    default:
      *error = absl::StrCat("unknown value type ", type);
      return false;
  }
}

}  // namespace

const GgmlType* FindGgmlType(uint32_t id) {
  for (const GgmlType& t : kTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::NotFoundError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("mmap of ", path, " failed: ", std::strerror(errno)));
    }
    file->map_ = static_cast<const uint8_t*>(map);
    file->owns_map_ = true;
  }
  ::close(fd);
  RETURN_IF_ERROR(file->ParseAll());
  return std::shared_ptr<const GgufFile>(std::move(file));
}

absl::StatusOr<std::shared_ptr<const GgufFile>> GgufFile::Parse(const uint8_t* data, size_t size,
                                                                const std::string& path) {
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->map_ = data;
  file->size_ = size;
  RETURN_IF_ERROR(file->ParseAll());
  return std::shared_ptr<const GgufFile>(std::move(file));
}

GgufFile::~GgufFile() {
  if (owns_map_ && map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), size_);
}

absl::Status GgufFile::ParseAll() {
  const auto bad = [&](const auto&... what) {
    return absl::DataLossError(absl::StrCat(path_, ": ", what...));
  };
  Cursor in(map_, size_);
  uint32_t magic;
  if (!in.Read(&magic) || magic != kMagic) return bad("not a GGUF file (no GGUF magic)");
  if (!in.Read(&version_)) return bad("truncated header");
  if (version_ != 2 && version_ != 3)
    return bad("GGUF version ", version_, " (versions 2 and 3 are read)");
  uint64_t n_tensors, n_kv;
  if (!in.Read(&n_tensors) || !in.Read(&n_kv)) return bad("truncated header");
  // Each key/value takes at least 8 + 4 + 1 bytes, each tensor info 8 + 4 + 8 + 4 + 8.
  if (n_kv > in.left() / 13) return bad(n_kv, " metadata entries cannot fit in the file");
  if (n_tensors > in.left() / 32) return bad(n_tensors, " tensors cannot fit in the file");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key, error;
    uint32_t type;
    if (!in.ReadString(&key) || !in.Read(&type)) return bad("truncated in metadata entry ", i);
    nlohmann::json value;
    if (!ReadValue(in, type, 0, &value, &error)) {
      return bad("metadata key '", key, "': ", error.empty() ? "truncated" : error);
    }
    if (metadata_.contains(key)) return bad("metadata key '", key, "' appears twice");
    metadata_[key] = std::move(value);
  }
  uint64_t alignment = 32;
  if (metadata_.contains("general.alignment")) {
    const nlohmann::json& a = metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<uint64_t>() == 0 ||
        (a.get<uint64_t>() & (a.get<uint64_t>() - 1)) != 0 || a.get<uint64_t>() > (1u << 20)) {
      return bad("general.alignment ", a.dump(), " is not a power of two");
    }
    alignment = a.get<uint64_t>();
  }
  std::vector<GgufTensor*> by_offset;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    uint32_t n_dims, type;
    if (!in.ReadString(&t.name) || !in.Read(&n_dims)) return bad("truncated in tensor info ", i);
    if (n_dims == 0 || n_dims > kMaxDims)
      return bad("tensor '", t.name, "' has ", n_dims, " dimensions");
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne;
      if (!in.Read(&ne)) return bad("truncated in tensor info '", t.name, "'");
      if (ne == 0 || ne > (uint64_t{1} << 40) || elements > (uint64_t{1} << 50) / ne) {
        return bad("tensor '", t.name, "' has an absurd dimension ", ne);
      }
      elements *= ne;
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    if (!in.Read(&type) || !in.Read(&t.offset))
      return bad("truncated in tensor info '", t.name, "'");
    t.type = FindGgmlType(type);
    if (t.type == nullptr) return bad("tensor '", t.name, "' has unknown ggml type ", type);
    if (t.ne[0] % t.type->block != 0) {
      return bad("tensor '", t.name, "' has rows of ", t.ne[0], " values, not whole ", t.type->name,
                 " blocks of ", t.type->block);
    }
    t.bytes = elements / t.type->block * t.type->block_bytes;
    if (t.offset % alignment != 0)
      return bad("tensor '", t.name, "' is at offset ", t.offset, ", not aligned to ", alignment);
    auto [it, inserted] = tensors_.emplace(t.name, std::move(t));
    if (!inserted) return bad("tensor '", it->first, "' appears twice");
    by_offset.push_back(&it->second);
  }
  const uint64_t data_start = (in.pos() + alignment - 1) / alignment * alignment;
  if (data_start > size_ && n_tensors > 0) return bad("truncated before the tensor data");
  data_ = map_ + std::min<uint64_t>(data_start, size_);
  const uint64_t data_size = size_ - std::min<uint64_t>(data_start, size_);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  uint64_t end = 0;
  for (const GgufTensor* t : by_offset) {
    if (t->offset < end) return bad("tensor '", t->name, "' overlaps the tensor before it");
    if (t->offset > data_size || t->bytes > data_size - t->offset) {
      return bad("tensor '", t->name, "' (", t->bytes, " bytes at ", t->offset,
                 ") runs past the end of the file (", data_size, " bytes of data)");
    }
    end = t->offset + t->bytes;
  }
  return absl::OkStatus();
}

const GgufTensor* GgufFile::Find(absl::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::StatusOr<int64_t> GgufFile::Int(const std::string& key) const {
  if (!metadata_.contains(key))
    return absl::NotFoundError(absl::StrCat(path_, " has no metadata key '", key, "'"));
  const nlohmann::json& v = metadata_[key];
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{1} << 62)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": metadata key '", key, "' is ", v.dump(), ", not an integer"));
  }
  return v.get<int64_t>();
}

absl::StatusOr<int64_t> GgufFile::Int(const std::string& key, int64_t fallback) const {
  if (!metadata_.contains(key)) return fallback;
  return Int(key);
}

absl::StatusOr<double> GgufFile::Float(const std::string& key, double fallback) const {
  if (!metadata_.contains(key)) return fallback;
  const nlohmann::json& v = metadata_[key];
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": metadata key '", key, "' is ", v.dump(), ", not a number"));
  }
  return v.get<double>();
}

absl::StatusOr<bool> GgufFile::Bool(const std::string& key, bool fallback) const {
  if (!metadata_.contains(key)) return fallback;
  const nlohmann::json& v = metadata_[key];
  if (!v.is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": metadata key '", key, "' is ", v.dump(), ", not a bool"));
  }
  return v.get<bool>();
}

absl::StatusOr<std::string> GgufFile::String(const std::string& key) const {
  if (!metadata_.contains(key))
    return absl::NotFoundError(absl::StrCat(path_, " has no metadata key '", key, "'"));
  const nlohmann::json& v = metadata_[key];
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": metadata key '", key, "' is ", v.dump(), ", not a string"));
  }
  return v.get<std::string>();
}

}  // namespace moe::model
