// model/compressed_tensors.cc
#include "model/compressed_tensors.h"

#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "model/dtype.h"
#include "model/formats/weight_format.h"
#include "model/tensor.h"

namespace moe::model {
namespace {

using Json = nlohmann::json;

constexpr int64_t kGroup = 128;  // our int4 blocks' group

absl::Status ConfigError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: field 'quantization_config' ", what));
}

std::string StringOr(const Json& j, const char* key, const std::string& fallback) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : fallback;
}

int64_t IntOr(const Json& j, const char* key, int64_t fallback) {
  return j.is_object() && j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : fallback;
}

bool Present(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j[key].is_null() && !(j[key].is_object() && j[key].empty());
}

// One config group's weight arguments, checked against what we keep resident.
absl::Status CheckWeights(const std::string& group, const std::string& format, const Json& w) {
  const std::string type = StringOr(w, "type", "int"), strategy = StringOr(w, "strategy", "tensor");
  const int64_t bits = IntOr(w, "num_bits", 8), group_size = IntOr(w, "group_size", 0);
  const bool symmetric = !(w.contains("symmetric") && w["symmetric"] == false);
  const std::string where = absl::StrCat("group '", group, "' (format ", format, ", ", type, bits, ", strategy ",
                                         strategy, ")");
  if (w.contains("dynamic") && w["dynamic"] != false) return ConfigError(absl::StrCat(where, " has dynamic weights: not served"));
  const std::string actorder = StringOr(w, "actorder", "");
  if (actorder == "group" || actorder == "dynamic") {
    return ConfigError(absl::StrCat(where, " has actorder '", actorder,
                                    "' (weights regrouped by g_idx): not served; re-quantize with actorder static or none"));
  }
  static const std::set<std::string> kStrategies = {"tensor", "channel", "group", "block"};
  if (kStrategies.count(strategy) == 0) {
    return ConfigError(absl::StrCat(where, ": served strategies: tensor, channel, group, block"));
  }
  if (type == "int" && bits == 4) {
    if (format != "pack-quantized") return ConfigError(absl::StrCat(where, ": 4-bit int weights are served packed (pack-quantized)"));
    if (strategy != "group" && strategy != "channel") return ConfigError(absl::StrCat(where, ": int4 is served per group of 128 or per channel"));
    if (strategy == "group" && group_size != kGroup) {
      return ConfigError(absl::StrCat(where, " has group_size ", group_size, "; served: 128"));
    }
    return absl::OkStatus();
  }
  if ((type == "int" && bits == 8) || (type == "float" && bits == 8)) {
    if (!symmetric) return ConfigError(absl::StrCat(where, " is asymmetric: 8-bit weights are served symmetric"));
    if (type == "float" && format == "pack-quantized") return ConfigError(absl::StrCat(where, ": fp8 is not packed"));
    return absl::OkStatus();
  }
  return ConfigError(absl::StrCat(where, ": served: int4 (pack-quantized), int8, fp8 e4m3"));
}

absl::StatusOr<PackedTensor> Need(const RawTensorFn& raw, const std::string& name) { return raw(name, true); }

absl::Status Expect(const PackedTensor& t, const std::string& name, std::initializer_list<const char*> dtypes,
                    const std::vector<int64_t>& shape) {
  bool dtype_ok = false;
  for (const char* d : dtypes) dtype_ok = dtype_ok || t.dtype == d;
  if (!dtype_ok || t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", t.dtype, ShapeString(t.shape), ", expected ",
                                                   absl::StrJoin(dtypes, "/"), ShapeString(shape)));
  }
  return absl::OkStatus();
}

// Element i of a float scale tensor (F32, BF16, F16) as f32, exactly.
float ScaleAt(const PackedTensor& t, int64_t i) {
  if (t.dtype == "F32") {
    float v;
    std::memcpy(&v, t.bytes + 4 * i, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, t.bytes + 2 * i, 2);
  return t.dtype == "BF16" ? BF16ToF32(bits) : F16ToF32(bits);
}

uint32_t Word(const PackedTensor& t, int64_t i) {
  uint32_t w;
  std::memcpy(&w, t.bytes + 4 * i, 4);
  return w;
}

absl::Status CheckShapeTensor(const RawTensorFn& raw, const std::string& base, int64_t out, int64_t in) {
  ASSIGN_OR_RETURN(const PackedTensor shape, raw(base + ".weight_shape", false));
  if (shape.bytes == nullptr) return absl::OkStatus();
  const std::string name = base + ".weight_shape";
  if ((shape.dtype != "I64" && shape.dtype != "I32") || shape.shape != std::vector<int64_t>{2}) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", shape.dtype, ShapeString(shape.shape),
                                                   ", expected I64[2]"));
  }
  int64_t dims[2];
  for (int i = 0; i < 2; ++i) {
    if (shape.dtype == "I64") {
      std::memcpy(&dims[i], shape.bytes + 8 * i, 8);
    } else {
      int32_t d;
      std::memcpy(&d, shape.bytes + 4 * i, 4);
      dims[i] = d;
    }
  }
  if (dims[0] != out || dims[1] != in) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' says [", dims[0], ", ", dims[1], "], expected [",
                                                   out, ", ", in, "]"));
  }
  return absl::OkStatus();
}

// The scale tensor's layout as a grid over W [out, in]: per tensor, per channel, per group of
// in/columns, or per block (the block's size from the grid's shape: ⌈out/rows⌉ = grid rows).
absl::StatusOr<ScaleGrid> GridOf(const PackedTensor& scale, const std::string& name, int64_t out, int64_t in) {
  if (scale.dtype != "F32" && scale.dtype != "BF16" && scale.dtype != "F16") {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", scale.dtype, ", expected F32/BF16/F16"));
  }
  int64_t count = 1;
  for (const int64_t d : scale.shape) count *= d;
  const int64_t sr = scale.shape.size() == 2 ? scale.shape[0] : 1, sc = scale.shape.size() == 2 ? scale.shape[1] : 1;
  ScaleGrid grid;
  if (count == 1 && scale.shape.size() <= 2) {
    grid.rows = out, grid.cols = in;  // per tensor
  } else if (scale.shape.size() == 2 && sr == out && in % sc == 0) {
    grid.rows = 1, grid.cols = in / sc;  // per channel (sc = 1) or per group
  } else if (scale.shape.size() == 2 && sr > 0 && sc > 0 && sr < out) {
    // Blocks: the smallest block edge that gives the grid's shape (128 for FP8_BLOCK).
    grid.rows = (out + sr - 1) / sr, grid.cols = (in + sc - 1) / sc;
    if ((out + grid.rows - 1) / grid.rows != sr || (in + grid.cols - 1) / grid.cols != sc) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' of shape ", ShapeString(scale.shape),
                                                     " is no scale grid over [", out, ", ", in, "]"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' of shape ", ShapeString(scale.shape),
                                                   " is no scale layout over [", out, ", ", in, "]"));
  }
  grid.scales.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) grid.scales[i] = ScaleAt(scale, i);
  return grid;
}

// pack-quantized int4 → int4 blocks of 128 (a group's scale, its zero, 64 bytes of two codes).
absl::StatusOr<QuantizedMatrix> UnpackInt4(const std::string& base, int64_t out, int64_t in, const PackedTensor& packed,
                                           const RawTensorFn& raw) {
  const std::string pname = base + ".weight_packed", sname = base + ".weight_scale", zname = base + ".weight_zero_point";
  if (in % kGroup != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", pname, "': int4 weights of ", out, " × ", in,
                                                   " (served: inputs a multiple of 128)"));
  }
  RETURN_IF_ERROR(Expect(packed, pname, {"I32"}, {out, in / 8}));
  ASSIGN_OR_RETURN(const PackedTensor scale, Need(raw, sname));
  const int64_t ct_groups = scale.shape.size() == 2 ? scale.shape[1] : 0;
  if (scale.shape.size() != 2 || scale.shape[0] != out || ct_groups < 1 || in % ct_groups != 0 ||
      (in / ct_groups) % kGroup != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", sname, "' is ", scale.dtype, ShapeString(scale.shape),
                                                   ", expected [", out, ", ", in / kGroup, "] (groups of 128) or [", out,
                                                   ", 1] (per channel)"));
  }
  RETURN_IF_ERROR(Expect(scale, sname, {"F16", "BF16", "F32"}, {out, ct_groups}));
  ASSIGN_OR_RETURN(const PackedTensor zero, raw(zname, false));
  if (zero.bytes != nullptr) RETURN_IF_ERROR(Expect(zero, zname, {"I32"}, {(out + 7) / 8, ct_groups}));
  const int64_t groups = in / kGroup, per_ct = (in / ct_groups) / kGroup;
  std::vector<uint8_t> rows(static_cast<size_t>(out * groups * kInt4.block_bytes));
  for (int64_t j = 0; j < out; ++j) {
    const uint8_t* row = packed.bytes + j * (in / 8) * 4;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t cg = g / per_ct;
      const float s = ScaleAt(scale, j * ct_groups + cg);
      const uint16_t s16 = F32ToF16(s);
      if (F16ToF32(s16) != s && !(s != s)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", sname, "' holds ", s, " at [", j, ", ", cg,
                                                       "], which f16 (int4 blocks' scale) cannot hold exactly"));
      }
      uint8_t* block = rows.data() + (j * groups + g) * kInt4.block_bytes;
      std::memcpy(block, &s16, 2);
      block[2] = zero.bytes == nullptr ? 8 : static_cast<uint8_t>((Word(zero, (j / 8) * ct_groups + cg) >> (4 * (j % 8))) & 15);
      const auto code = [&](int64_t i) {
        uint32_t w;
        std::memcpy(&w, row + (i / 8) * 4, 4);
        return static_cast<uint8_t>((w >> (4 * (i % 8))) & 15);
      };
      for (int64_t t = 0; t < 64; ++t) {
        block[3 + t] = static_cast<uint8_t>(code(g * kGroup + t) | (code(g * kGroup + 64 + t) << 4));
      }
    }
  }
  return QuantizedMatrix::FromBytes(kInt4, out, in, rows.data());
}

}  // namespace

absl::Status ParseCompressedTensorsConfig(const Json& q, ModelConfig& c) {
  static const std::set<std::string> kFormats = {"pack-quantized", "int-quantized", "float-quantized",
                                                 "naive-quantized", "mixed-precision", "dense"};
  const std::string format = StringOr(q, "format", "dense");
  if (kFormats.count(format) == 0) {
    return ConfigError(absl::StrCat("is compressed-tensors format '", format,
                                    "'; served: pack-quantized, int-quantized, float-quantized, naive-quantized, "
                                    "mixed-precision"));
  }
  if (Present(q, "transform_config")) {
    return ConfigError("has a compressed-tensors transform_config (rotations applied to weights and activations): not served");
  }
  if (Present(q, "sparsity_config") && StringOr(q["sparsity_config"], "format", "dense") != "dense") {
    return ConfigError(absl::StrCat("has sparsity format '", StringOr(q["sparsity_config"], "format", ""),
                                    "': not served (dense weights only)"));
  }
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) {
    return ConfigError("is compressed-tensors without config_groups");
  }
  for (const auto& [name, group] : q["config_groups"].items()) {
    if (!group.is_object()) return ConfigError(absl::StrCat("group '", name, "' is not an object"));
    const std::string group_format = StringOr(group, "format", format);
    if (kFormats.count(group_format) == 0 || group_format == "mixed-precision") {
      return ConfigError(absl::StrCat("group '", name, "' has format '", group_format, "'; served: pack-quantized, ",
                                      "int-quantized, float-quantized, naive-quantized"));
    }
    if (Present(group, "weights")) RETURN_IF_ERROR(CheckWeights(name, group_format, group["weights"]));
  }
  c.compressed_tensors = q.dump();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<QuantizedMatrix>> LoadCompressedLinear(const std::string& base, int64_t out, int64_t in,
                                                                   const RawTensorFn& raw) {
  ASSIGN_OR_RETURN(const PackedTensor packed, raw(base + ".weight_packed", false));
  ASSIGN_OR_RETURN(const PackedTensor g_idx, raw(base + ".weight_g_idx", false));
  if (g_idx.bytes != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", base, ".weight_g_idx': activation-ordered groups are not served"));
  }
  if (packed.bytes != nullptr) {
    RETURN_IF_ERROR(CheckShapeTensor(raw, base, out, in));
    if (packed.shape == std::vector<int64_t>{out, in / 4} && in % 4 == 0) {
      // 8-bit codes packed four to a word (W8A16), stored as code + 128: int8 rows.
      RETURN_IF_ERROR(Expect(packed, base + ".weight_packed", {"I32"}, {out, in / 4}));
      ASSIGN_OR_RETURN(const PackedTensor scale, Need(raw, base + ".weight_scale"));
      ASSIGN_OR_RETURN(ScaleGrid grid, GridOf(scale, base + ".weight_scale", out, in));
      ASSIGN_OR_RETURN(const PackedTensor zero, raw(base + ".weight_zero_point", false));
      if (zero.bytes != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", base, ".weight_zero_point': 8-bit weights are served symmetric"));
      }
      std::vector<uint8_t> codes(static_cast<size_t>(out * in));
      for (int64_t i = 0; i < out * in; ++i) codes[i] = static_cast<uint8_t>(packed.bytes[i] ^ 0x80);  // u − 128
      ASSIGN_OR_RETURN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kInt8, out, in, codes.data(), 0, std::move(grid)));
      return std::optional<QuantizedMatrix>(std::move(m));
    }
    ASSIGN_OR_RETURN(QuantizedMatrix m, UnpackInt4(base, out, in, packed, raw));
    return std::optional<QuantizedMatrix>(std::move(m));
  }
  ASSIGN_OR_RETURN(const PackedTensor weight, raw(base + ".weight", false));
  if (weight.bytes == nullptr || (weight.dtype != "I8" && weight.dtype != "F8_E4M3")) return std::nullopt;
  RETURN_IF_ERROR(Expect(weight, base + ".weight", {"I8", "F8_E4M3"}, {out, in}));
  ASSIGN_OR_RETURN(const PackedTensor zero, raw(base + ".weight_zero_point", false));
  if (zero.bytes != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", base, ".weight_zero_point': 8-bit weights are served symmetric"));
  }
  ASSIGN_OR_RETURN(const PackedTensor scale, Need(raw, base + ".weight_scale"));
  ASSIGN_OR_RETURN(ScaleGrid grid, GridOf(scale, base + ".weight_scale", out, in));
  absl::StatusOr<QuantizedMatrix> m = QuantizedMatrix::FromBytes(weight.dtype == "I8" ? kInt8 : kFp8E4m3, out, in,
                                                                 weight.bytes, 0, std::move(grid));
  if (!m.ok()) return absl::Status(m.status().code(), absl::StrCat("tensor '", base, ".weight': ", m.status().message()));
  return std::optional<QuantizedMatrix>(*std::move(m));
}

}  // namespace moe::model
