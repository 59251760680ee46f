// model/checkpoint.cc
#include "model/checkpoint.h"

#include "model/compressed_tensors.h"
#include "model/fp8.h"
#include "model/int4_checkpoint.h"

#include <filesystem>
#include <functional>
#include <numeric>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace moe::model {

namespace fs = std::filesystem;

absl::StatusOr<std::map<std::string, std::string>> ParseShardIndex(absl::string_view json_text,
                                                                   absl::string_view path) {
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, " is not valid JSON: ", e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": missing object 'weight_map'"));
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
      return absl::DataLossError(absl::StrCat(path, ": weight_map entry '", name, "' must be a file name in the folder"));
    }
    weight_map[name] = file.get<std::string>();
  }
  return weight_map;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  std::error_code ec;
  if (absl::EndsWith(dir, ".gguf")) {
    ASSIGN_OR_RETURN(ckpt->gguf_, GgufModel::Open(dir));
    ckpt->config_ = ckpt->gguf_->config();
    return ckpt;
  }
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint folder ", dir, " does not exist"));
  }
  ASSIGN_OR_RETURN(ckpt->config_, ModelConfig::FromFile((fs::path(dir) / "config.json").string()));

  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    std::stringstream text;
    text << in.rdbuf();
    ASSIGN_OR_RETURN(ckpt->weight_map_, ParseShardIndex(text.str(), index_path.string()));
    return ckpt;
  }
  if (!fs::exists(fs::path(dir) / "model.safetensors", ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint folder ", dir,
                                            " has neither model.safetensors nor "
                                            "model.safetensors.index.json"));
  }
  ckpt->single_file_ = "model.safetensors";
  return ckpt;
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Checkpoint::File(
    const std::string& file) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(file);
  if (it != files_.end()) return it->second;
  ASSIGN_OR_RETURN(auto opened, SafetensorsFile::Open((fs::path(dir_) / file).string()));
  files_.emplace(file, opened);
  return opened;
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Checkpoint::FileOf(const std::string& name) const {
  std::string file = single_file_;
  if (file.empty()) {
    auto it = weight_map_.find(name);
    if (it == weight_map_.end()) {
      return absl::NotFoundError(
          absl::StrCat("tensor '", name, "' is not in the index of checkpoint ", dir_));
    }
    file = it->second;
  }
  return File(file);
}

absl::StatusOr<Tensor> Checkpoint::Get(const std::string& name) const {
  if (gguf_ != nullptr) return GgufGet(name);
  ASSIGN_OR_RETURN(auto shard, FileOf(name));
  return shard->Get(name);
}

absl::StatusOr<const uint8_t*> Checkpoint::GetRaw(const std::string& name, std::string* dtype,
                                                  std::vector<int64_t>* shape) const {
  if (gguf_ != nullptr) {
    return absl::UnimplementedError(absl::StrCat("raw safetensors bytes of '", name, "' from GGUF model ", dir_));
  }
  ASSIGN_OR_RETURN(auto shard, FileOf(name));
  SafetensorsFile::Entry entry;
  ASSIGN_OR_RETURN(const uint8_t* bytes, shard->RawBytes(name, &entry));
  *dtype = entry.dtype;
  *shape = entry.shape;
  return bytes;  // the shard stays mapped: files_ keeps it for the checkpoint's life
}

absl::StatusOr<Tensor> Checkpoint::GetWeight(const std::string& name, const std::vector<int64_t>& shape) const {
  if (gguf_ != nullptr) return GgufWeight(name, shape);
  if (!config_.int4_method.empty() || !config_.compressed_tensors.empty()) {
    ASSIGN_OR_RETURN(std::optional<QuantizedMatrix> q, Int4Stored(name, shape));
    if (q.has_value()) {
      std::vector<float> values(static_cast<size_t>(q->n() * q->k()));
      for (int64_t r = 0; r < q->n(); ++r) q->DequantizeRow(r, values.data() + r * q->k());
      return Tensor::FromF32(values, shape);
    }
  }
  ASSIGN_OR_RETURN(auto shard, FileOf(name));
  SafetensorsFile::Entry entry;
  ASSIGN_OR_RETURN(const uint8_t* bytes, shard->RawBytes(name, &entry));
  if (entry.dtype != "F8_E4M3" || config_.fp8_block_n <= 0) return GetWithShape(name, shape);
  if (entry.shape != shape || shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in checkpoint ", dir_, " has shape ",
                                                   ShapeString(entry.shape), ", expected ", ShapeString(shape)));
  }
  ASSIGN_OR_RETURN(const Tensor scales, Get(name + "_scale_inv"));
  absl::StatusOr<Tensor> w = DequantizeFp8Blocks(name, bytes, shape[0], shape[1], scales, config_.fp8_block_n,
                                                 config_.fp8_block_k, DType::kBF16);
  if (!w.ok()) return absl::Status(w.status().code(), absl::StrCat(w.status().message(), " (checkpoint ", dir_, ")"));
  return w;
}

absl::StatusOr<std::optional<QuantizedMatrix>> Checkpoint::GetStoredQuantized(
    const std::string& name, const std::vector<int64_t>& shape) const {
  if (gguf_ != nullptr) return GgufStoredQuantized(name, shape);
  if (!config_.int4_method.empty() || !config_.compressed_tensors.empty()) return Int4Stored(name, shape);
  ASSIGN_OR_RETURN(auto shard, FileOf(name));
  SafetensorsFile::Entry entry;
  ASSIGN_OR_RETURN(const uint8_t* bytes, shard->RawBytes(name, &entry));
  if (entry.dtype != "F8_E4M3" || config_.fp8_block_n <= 0 || config_.fp8_block_k <= 0) {
    return std::nullopt;
  }
  if (entry.shape != shape || shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in checkpoint ", dir_, " has shape ",
                                                   ShapeString(entry.shape), ", expected ", ShapeString(shape)));
  }
  const int64_t bn = config_.fp8_block_n, bk = config_.fp8_block_k;
  const std::vector<int64_t> grid_shape = {(shape[0] + bn - 1) / bn, (shape[1] + bk - 1) / bk};
  ASSIGN_OR_RETURN(const Tensor scales, GetWithShape(name + "_scale_inv", grid_shape));
  if (scales.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "_scale_inv' in checkpoint ", dir_, " is ",
                                                   DTypeName(scales.dtype()), ", expected F32"));
  }
  ScaleGrid grid{.scales = std::vector<float>(scales.f32().begin(), scales.f32().end()),
                                  .rows = bn,
                                  .cols = bk};
  absl::StatusOr<QuantizedMatrix> m = QuantizedMatrix::FromBytes(kFp8E4m3, shape[0], shape[1], bytes, 0, std::move(grid));
  if (!m.ok()) return absl::Status(m.status().code(), absl::StrCat("tensor '", name, "': ", m.status().message()));
  return std::optional<QuantizedMatrix>(*std::move(m));
}

absl::StatusOr<Tensor> Checkpoint::GetWithShape(const std::string& name,
                                                const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(Tensor t, Get(name));
  // GGUF writes [1, H] and [E] vectors as 1-D [H]: the same values under leading 1s.
  if (gguf_ != nullptr && t.shape() != shape && t.rank() == 1 &&
      t.num_elements() == std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>())) {
    return Tensor::Borrow(t.dtype(), shape, t.raw_data(), nullptr).Clone();
  }
  if (t.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in checkpoint ", dir_,
                                                   " has shape ", ShapeString(t.shape()),
                                                   ", expected ", ShapeString(shape)));
  }
  return t;
}

namespace {

absl::StatusOr<DType> FloatDType(const GgmlType& type) {
  if (type.id == 0) return DType::kF32;
  if (type.id == 1) return DType::kF16;
  if (type.id == 30) return DType::kBF16;
  return absl::InvalidArgumentError(type.name);
}

std::string ServedGgufTypes() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, IQ4_XS, MXFP4";
}

}  // namespace

absl::StatusOr<PackedTensor> Checkpoint::Raw(const std::string& name, bool required) const {
  PackedTensor t;
  absl::StatusOr<const uint8_t*> bytes = GetRaw(name, &t.dtype, &t.shape);
  if (bytes.ok()) {
    t.bytes = *bytes;
  } else if (required || !absl::IsNotFound(bytes.status())) {
    return bytes.status();
  }
  return t;
}

absl::StatusOr<std::optional<QuantizedMatrix>> Checkpoint::Int4Stored(const std::string& name,
                                                                      const std::vector<int64_t>& shape) const {
  if (!absl::EndsWith(name, ".weight") || shape.size() != 2) return std::nullopt;
  const std::string base = name.substr(0, name.size() - 7);
  const auto in_checkpoint = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (checkpoint ", dir_, ")"));
  };
  if (!config_.compressed_tensors.empty()) {
    absl::StatusOr<std::optional<QuantizedMatrix>> m = LoadCompressedLinear(
        base, shape[0], shape[1], [this](const std::string& n, bool required) { return Raw(n, required); });
    if (!m.ok()) return in_checkpoint(m.status());
    return m;
  }
  ASSIGN_OR_RETURN(const PackedTensor qweight, Raw(base + ".qweight", false));
  if (qweight.bytes == nullptr) return std::nullopt;  // a module kept in full precision
  ASSIGN_OR_RETURN(const PackedTensor qzeros, Raw(base + ".qzeros", true));
  ASSIGN_OR_RETURN(const PackedTensor scales, Raw(base + ".scales", true));
  ASSIGN_OR_RETURN(const PackedTensor g_idx, Raw(base + ".g_idx", false));
  absl::StatusOr<QuantizedMatrix> m =
      UnpackInt4Linear(config_.int4_method, base, shape[0], shape[1], qweight, qzeros, scales, g_idx);
  if (!m.ok()) return in_checkpoint(m.status());
  return std::optional<QuantizedMatrix>(*std::move(m));
}

absl::StatusOr<Tensor> Checkpoint::GgufGet(const std::string& name) const {
  ASSIGN_OR_RETURN(const GgufModel::View v, gguf_->Find(name));
  const absl::StatusOr<DType> dtype = FloatDType(*v.tensor->type);
  if (!dtype.ok() && FormatOfGgmlType(*v.tensor->type) != nullptr && v.shape.size() == 2) {
    // A quantized gate or other small matrix read as values: dequantized exactly to f32.
    return GgufWeight(name, v.shape);
  }
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' of ", dir_, " is ", v.tensor->type->name,
                                                   ", where a float tensor (F32, F16, BF16) is read"));
  }
  return Tensor::Borrow(*dtype, v.shape, v.bytes, v.file);
}

absl::StatusOr<Tensor> Checkpoint::GgufWeight(const std::string& name, const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(std::optional<QuantizedMatrix> q, GgufStoredQuantized(name, shape));
  if (!q.has_value()) return GetWithShape(name, shape);
  std::vector<float> values(static_cast<size_t>(q->n() * q->k()));
  for (int64_t r = 0; r < q->n(); ++r) q->DequantizeRow(r, values.data() + r * q->k());
  return Tensor::FromF32(values, shape);
}

absl::StatusOr<std::optional<QuantizedMatrix>> Checkpoint::GgufStoredQuantized(const std::string& name,
                                                                               const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(const GgufModel::View v, gguf_->Find(name));
  if (FloatDType(*v.tensor->type).ok()) return std::nullopt;
  const WeightFormat* format = FormatOfGgmlType(*v.tensor->type);
  if (format == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' of ", dir_, " is ", v.tensor->type->name,
                                                   ", a type moe-serve does not serve (served: ", ServedGgufTypes(), ")"));
  }
  if (v.shape != shape || shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' of ", dir_, " has shape ", ShapeString(v.shape),
                                                   ", expected ", ShapeString(shape)));
  }
  absl::StatusOr<QuantizedMatrix> m = QuantizedMatrix::FromBytes(*format, shape[0], shape[1], v.bytes);
  if (!m.ok()) return absl::Status(m.status().code(), absl::StrCat("tensor '", name, "': ", m.status().message()));
  return std::optional<QuantizedMatrix>(*std::move(m));
}

std::vector<std::string> Checkpoint::OpenedFiles() const {
  if (gguf_ != nullptr) {
    std::vector<std::string> paths;
    for (const auto& f : gguf_->files()) paths.push_back(f->path());
    return paths;
  }
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, file] : files_) names.push_back(name);
  return names;
}

}  // namespace moe::model
