// client/npy.cc
#include "client/npy.h"

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moe::client {

absl::StatusOr<model::Tensor> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return bad("not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return bad("truncated header");
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    header_start = 12;
  } else {
    return bad(absl::StrCat("unsupported .npy version ", major));
  }
  if (header_start + header_len > bytes.size()) return bad("truncated header");
  const std::string header = bytes.substr(header_start, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) return bad("no descr");
  const std::string descr = m[1];
  model::DType dtype;
  if (descr == "<f4") {
    dtype = model::DType::kF32;
  } else if (descr == "<f2") {
    dtype = model::DType::kF16;
  } else {
    return bad(absl::StrCat("dtype '", descr, "' is not supported; use float32 or float16"));
  }
  if (header.find("'fortran_order': False") == std::string::npos) return bad("array must be C-ordered");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\((\\d+),\\s*(\\d+),?\\s*\\)"))) {
    return bad("array must be 2-D: [tokens, hidden]");
  }
  int64_t rows = 0, cols = 0;
  if (!absl::SimpleAtoi(m[1].str(), &rows) || !absl::SimpleAtoi(m[2].str(), &cols)) return bad("bad shape");
  model::Tensor t = model::Tensor::Zeros(dtype, {rows, cols});
  const size_t data_start = header_start + header_len;
  if (bytes.size() - data_start != t.num_bytes()) {
    return bad(absl::StrCat("data has ", bytes.size() - data_start, " bytes; shape needs ", t.num_bytes()));
  }
  std::memcpy(t.mutable_raw_data(), bytes.data() + data_start, t.num_bytes());
  return t;
}

absl::Status WriteNpy(const std::string& path, const model::Tensor& tensor) {
  const model::Tensor f32 = tensor.ToF32();
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", f32.dim(0), ", ",
                                    f32.dim(1), "), }");
  // Pad so that magic (6) + version (2) + length (2) + header ends on a multiple of 64, with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(f32.raw_data()), static_cast<std::streamsize>(f32.num_bytes()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace moe::client
