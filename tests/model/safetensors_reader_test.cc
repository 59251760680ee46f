// tests/model/safetensors_reader_test.cc
#include "model/safetensors_reader.h"

#include <cstring>
#include <fstream>

#include "gtest/gtest.h"
#include "model/safetensors_writer.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

// Writes a file made of an 8-byte length, `header` and `data_bytes` bytes of data.
std::string WriteRaw(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  const std::string path = testing::MakeTempDir("st") + "/x.safetensors";
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = claimed_len ? claimed_len : header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header;
  out << std::string(data_bytes, '\x01');
  return path;
}

TEST(SafetensorsReaderTest, RoundTripsEveryDtypeAndMetadata) {
  const std::string path = testing::MakeTempDir("st") + "/rt.safetensors";
  const std::vector<float> v = testing::RandomVector(12, 3);
  Tensor f32 = Tensor::FromF32(v, {3, 4});
  SafetensorsWriter writer;
  writer.Add("a.f32", f32);
  writer.Add("b.bf16", f32.ConvertTo(DType::kBF16));
  writer.Add("c.f16", f32.ConvertTo(DType::kF16));
  writer.Add("d.empty", Tensor::Zeros(DType::kF32, {0, 4}));
  ASSERT_OK(writer.Write(path, {{"format", "pt"}}));

  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->entries().size(), 4u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  for (const char* name : {"a.f32", "b.bf16", "c.f16"}) {
    ASSERT_OK_AND_ASSIGN(Tensor t, file->Get(name));
    EXPECT_EQ(t.shape(), (std::vector<int64_t>{3, 4}));
    EXPECT_FALSE(t.is_owned());
    Tensor back = t.ToF32();
    Tensor expected = f32.ConvertTo(t.dtype()).ToF32();
    for (int i = 0; i < 12; ++i) EXPECT_EQ(back.f32()[i], expected.f32()[i]) << name;
  }
  ASSERT_OK_AND_ASSIGN(Tensor empty, file->Get("d.empty"));
  EXPECT_EQ(empty.num_elements(), 0);
  // The view keeps the mapping alive after the file object is dropped.
  ASSERT_OK_AND_ASSIGN(Tensor keep, file->Get("a.f32"));
  file.reset();
  EXPECT_EQ(keep.ToF32().f32()[5], v[5]);
}

TEST(SafetensorsReaderTest, HeaderIsPaddedToEightBytes) {
  const std::string path = testing::MakeTempDir("st") + "/pad.safetensors";
  SafetensorsWriter writer;
  writer.Add("w", Tensor::FromF32(testing::RandomVector(3, 4), {3}));
  ASSERT_OK(writer.Write(path));
  std::ifstream in(path, std::ios::binary);
  uint64_t len = 0;
  in.read(reinterpret_cast<char*>(&len), 8);
  EXPECT_EQ(len % 8, 0u);
}

// Bytes first, then wider elements, as a writer may add them: the file puts the widest first so
// that every tensor starts aligned (no holes are allowed between them).
TEST(SafetensorsReaderTest, WidestElementsAreWrittenFirstSoEveryTensorIsAligned) {
  const std::string path = testing::MakeTempDir("st") + "/order.safetensors";
  SafetensorsWriter writer;
  writer.AddRaw("scales", "U8", {3}, {1, 2, 3});
  writer.Add("b", Tensor::FromF32(testing::RandomVector(3, 8), {3}).ConvertTo(DType::kBF16));
  writer.Add("f", Tensor::FromF32(testing::RandomVector(5, 9), {5}));
  ASSERT_OK(writer.Write(path));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->entries().at("f").begin, 0u);
  EXPECT_EQ(file->entries().at("b").begin, 20u);
  EXPECT_EQ(file->entries().at("scales").begin, 26u);
  for (const char* name : {"f", "b"}) {
    ASSERT_OK_AND_ASSIGN(Tensor t, file->Get(name));
    EXPECT_FALSE(t.is_owned()) << name << " is read in place";
  }
}

// A file from a writer that does not pad its header (the format does not require it): tensors
// that would be misaligned in the mapping come back as aligned copies with the same values.
TEST(SafetensorsReaderTest, AnUnpaddedHeaderGivesAlignedCopies) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";  // 55 bytes
  ASSERT_NE((8 + header.size()) % 4, 0u);
  const std::string path = testing::MakeTempDir("st") + "/odd.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = header.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out << header;
    const float values[2] = {1.5f, -2.25f};
    out.write(reinterpret_cast<const char*>(values), sizeof(values));
  }
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  ASSERT_OK_AND_ASSIGN(Tensor a, file->Get("a"));
  EXPECT_TRUE(a.is_owned());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw_data()) % alignof(float), 0u);
  EXPECT_EQ(std::vector<float>(a.f32().begin(), a.f32().end()), (std::vector<float>{1.5f, -2.25f}));
}

TEST(SafetensorsReaderTest, MissingFileIsNotFound) {
  EXPECT_THAT(SafetensorsFile::Open("/nonexistent/model.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/model.safetensors"));
}

TEST(SafetensorsReaderTest, TruncatedFile) {
  const std::string path = testing::MakeTempDir("st") + "/short.safetensors";
  std::ofstream(path) << "abc";
  EXPECT_THAT(SafetensorsFile::Open(path), StatusIs(absl::StatusCode::kDataLoss, "truncated"));
}

TEST(SafetensorsReaderTest, HeaderLongerThanFile) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw("{}", 0, 1000)),
              StatusIs(absl::StatusCode::kDataLoss, "longer than the file"));
}

TEST(SafetensorsReaderTest, BadJson) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw("{\"a\": [1, 2", 0)),
              StatusIs(absl::StatusCode::kDataLoss, "not valid JSON"));
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw("[1, 2]", 0)),
              StatusIs(absl::StatusCode::kDataLoss, "not a JSON object"));
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(R"({"w": {"dtype": "F32"}})", 0)),
              StatusIs(absl::StatusCode::kDataLoss, "tensor 'w' needs dtype, shape and data_offsets"));
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8)),
              StatusIs(absl::StatusCode::kDataLoss, "non-negative"));
}

TEST(SafetensorsReaderTest, OffsetsOutOfBounds) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(
                  R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8)),
              StatusIs(absl::StatusCode::kDataLoss, "tensor 'w': data_offsets [0, 16) out of bounds"));
}

TEST(SafetensorsReaderTest, OffsetsDisagreeWithShape) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(
                  R"({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 16]}})", 16)),
              StatusIs(absl::StatusCode::kDataLoss, "BF16 of this shape needs 8"));
}

TEST(SafetensorsReaderTest, OverlappingTensors) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(
                  R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  12)),
              StatusIs(absl::StatusCode::kDataLoss, "'a' and 'b' overlap"));
}

TEST(SafetensorsReaderTest, UnknownDtype) {
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw(
                  R"({"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 8]}})", 8)),
              StatusIs(absl::StatusCode::kDataLoss, "tensor 'w': unknown dtype 'Q4_K'"));
}

TEST(SafetensorsReaderTest, MissingTensorAndUnservableDtype) {
  const std::string path = WriteRaw(
      R"({"fp8": {"dtype": "F8_E4M3", "shape": [2, 2], "data_offsets": [0, 4]}})", 4);
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_THAT(file->Get("nope"), StatusIs(absl::StatusCode::kNotFound, "tensor 'nope' not found"));
  EXPECT_THAT(file->Get("fp8"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'fp8' in " + path + " has dtype F8_E4M3"));
}

}  // namespace
}  // namespace moe::model
