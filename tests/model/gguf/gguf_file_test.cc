// tests/model/gguf/gguf_file_test.cc
// The GGUF parser on a valid file (every metadata type, tensors of several ggml types, offsets and
// sizes) and on every way the issue lists a file can be bad: wrong magic or version, truncated at
// every length, absurd counts, lengths and dimensions, unknown value and tensor types, rows that
// are not whole blocks, misaligned, overlapping or out-of-range tensor data, duplicated names,
// keys of the wrong type. Each bad file is a DATA_LOSS (or INVALID_ARGUMENT for a typed read)
// naming the problem, never a crash.
#include "model/gguf/gguf_file.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/gguf_bytes.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::GgufBytes;
using ::moe::testing::StatusIs;

// A valid file: metadata of each kind, an F32 vector, a Q8_0 matrix and an F16 matrix.
GgufBytes Valid() {
  GgufBytes g;
  g.String("general.architecture", "qwen3moe")
      .U32("qwen3moe.block_count", 2)
      .I32("some.int", -7)
      .U64("some.u64", 1ull << 40)
      .F32("some.float", 0.5f)
      .Bool("some.bool", true)
      .U32Array("some.array", {1, 2, 3})
      .StringArray("tokenizer.ggml.tokens", {"a", "bc", ""})
      .Tensor("v", {8}, 0, testing::RandomBytes(32, 1))
      .Tensor("q", {64, 3}, 8, testing::RandomBytes(2 * 34 * 3, 2))
      .Tensor("h", {5, 2}, 1, testing::RandomBytes(20, 3));
  return g;
}

absl::StatusOr<std::shared_ptr<const GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::Parse(bytes.data(), bytes.size(), "test.gguf");
}

template <typename T>
void Patch(std::vector<uint8_t>& bytes, size_t at, T v) {
  std::memcpy(bytes.data() + at, &v, sizeof(T));
}

TEST(GgufFileTest, ReadsMetadataAndTensors) {
  GgufBytes g = Valid();
  const std::vector<uint8_t> bytes = g.Build();
  ASSERT_OK_AND_ASSIGN(auto f, ParseBytes(bytes));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(*f->String("general.architecture"), "qwen3moe");
  EXPECT_EQ(*f->Int("qwen3moe.block_count"), 2);
  EXPECT_EQ(*f->Int("some.int"), -7);
  EXPECT_EQ(*f->Int("some.u64"), int64_t{1} << 40);
  EXPECT_EQ(*f->Float("some.float", 0), 0.5);
  EXPECT_EQ(*f->Bool("some.bool", false), true);
  EXPECT_EQ(f->metadata()["some.array"], nlohmann::json({1, 2, 3}));
  EXPECT_EQ(f->metadata()["tokenizer.ggml.tokens"], nlohmann::json({"a", "bc", ""}));
  EXPECT_EQ(*f->Int("absent", 9), 9);
  ASSERT_EQ(f->tensors().size(), 3u);
  const GgufTensor* q = f->Find("q");
  ASSERT_NE(q, nullptr);
  EXPECT_STREQ(q->type->name, "Q8_0");
  EXPECT_EQ(q->Shape(), (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(q->bytes, 2u * 34 * 3);
  EXPECT_EQ(f->Data(*q), bytes.data() + g.tensor_data_starts[1]);
  EXPECT_EQ(f->Find("h")->bytes, 20u);
  EXPECT_EQ(f->Find("missing"), nullptr);
}

TEST(GgufFileTest, TypedReadsOfTheWrongTypeAreRefused) {
  const std::vector<uint8_t> bytes = Valid().Build();
  ASSERT_OK_AND_ASSIGN(auto f, ParseBytes(bytes));
  EXPECT_THAT(f->Int("general.architecture"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not an integer"));
  EXPECT_THAT(f->String("qwen3moe.block_count"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a string"));
  EXPECT_THAT(f->Bool("some.int", false),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a bool"));
  EXPECT_THAT(f->Float("some.array", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a number"));
  EXPECT_THAT(f->Int("absent"), StatusIs(absl::StatusCode::kNotFound, "absent"));
}

TEST(GgufFileTest, EveryTruncationIsDataLoss) {
  const std::vector<uint8_t> bytes = Valid().Build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
    EXPECT_THAT(ParseBytes(cut), StatusIs(absl::StatusCode::kDataLoss, ""))
        << n << " of " << bytes.size() << " bytes";
  }
}

TEST(GgufFileTest, BadHeadersAreDataLoss) {
  std::vector<uint8_t> bytes = Valid().Build();
  std::vector<uint8_t> b = bytes;
  b[0] = 'X';
  EXPECT_THAT(ParseBytes(b), StatusIs(absl::StatusCode::kDataLoss, "no GGUF magic"));
  for (uint32_t version : {1u, 4u}) {
    b = bytes;
    Patch(b, 4, version);
    EXPECT_THAT(ParseBytes(b), StatusIs(absl::StatusCode::kDataLoss, "versions 2 and 3"));
  }
  b = bytes;
  Patch<uint64_t>(b, 8, uint64_t{1} << 60);  // tensor count
  EXPECT_THAT(ParseBytes(b), StatusIs(absl::StatusCode::kDataLoss, "cannot fit"));
  b = bytes;
  Patch<uint64_t>(b, 16, uint64_t{1} << 60);  // metadata count
  EXPECT_THAT(ParseBytes(b), StatusIs(absl::StatusCode::kDataLoss, "cannot fit"));
  b = bytes;
  Patch<uint64_t>(b, 24, uint64_t{1} << 62);  // the first key's length
  EXPECT_THAT(ParseBytes(b), StatusIs(absl::StatusCode::kDataLoss, "truncated"));
}

TEST(GgufFileTest, BadValuesAreDataLoss) {
  GgufBytes g;
  g.U32Array("a", {1, 2});
  std::vector<uint8_t> b = g.Build();
  const size_t type_at = 24 + 8 + 1;  // after the key "a": the value type
  std::vector<uint8_t> c = b;
  Patch<uint32_t>(c, type_at, 13);
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "unknown value type 13"));
  c = b;
  Patch<uint32_t>(c, type_at + 4, 77);  // element type
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "unknown value type 77"));
  c = b;
  Patch<uint64_t>(c, type_at + 8, uint64_t{1} << 59);  // element count
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "past the end"));
  GgufBytes h;
  h.Bool("b", true);
  c = h.Build();
  c[type_at + 4] = 2;
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "a bool of value 2"));
  GgufBytes d;
  d.U32("k", 1).U32("k", 2);
  EXPECT_THAT(ParseBytes(d.Build()), StatusIs(absl::StatusCode::kDataLoss, "appears twice"));
  GgufBytes a;
  a.U32("general.alignment", 24).Tensor("v", {8}, 0, testing::RandomBytes(32, 1));
  EXPECT_THAT(ParseBytes(a.Build(32)), StatusIs(absl::StatusCode::kDataLoss, "power of two"));
}

TEST(GgufFileTest, BadTensorInfosAreDataLoss) {
  const auto with = [](std::vector<uint64_t> ne, uint32_t type, size_t bytes) {
    GgufBytes g;
    g.Tensor("t", std::move(ne), type, testing::RandomBytes(bytes, 4));
    return g.Build();
  };
  EXPECT_THAT(ParseBytes(with({}, 0, 4)), StatusIs(absl::StatusCode::kDataLoss, "0 dimensions"));
  EXPECT_THAT(ParseBytes(with({1, 1, 1, 1, 1}, 0, 4)),
              StatusIs(absl::StatusCode::kDataLoss, "5 dimensions"));
  EXPECT_THAT(ParseBytes(with({4, 0}, 0, 4)),
              StatusIs(absl::StatusCode::kDataLoss, "absurd dimension 0"));
  EXPECT_THAT(ParseBytes(with({uint64_t{1} << 30, uint64_t{1} << 30, uint64_t{1} << 30}, 0, 4)),
              StatusIs(absl::StatusCode::kDataLoss, "absurd dimension"));
  EXPECT_THAT(ParseBytes(with({8}, 5, 32)),
              StatusIs(absl::StatusCode::kDataLoss, "unknown ggml type 5"));
  EXPECT_THAT(ParseBytes(with({48}, 8, 68)),
              StatusIs(absl::StatusCode::kDataLoss, "not whole Q8_0 blocks"));
  EXPECT_THAT(ParseBytes(with({64}, 8, 34)),
              StatusIs(absl::StatusCode::kDataLoss, "runs past the end"));
  GgufBytes two;
  two.Tensor("a", {8}, 0, testing::RandomBytes(32, 5))
      .Tensor("b", {8}, 0, testing::RandomBytes(32, 6));
  std::vector<uint8_t> b = two.Build();
  std::vector<uint8_t> c = b;
  Patch<uint64_t>(c, two.tensor_offset_fields[1], 0);  // b on top of a
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "overlaps"));
  c = b;
  Patch<uint64_t>(c, two.tensor_offset_fields[1], 40);
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "not aligned to 32"));
  c = b;
  Patch<uint64_t>(c, two.tensor_offset_fields[1], uint64_t{1} << 62);
  EXPECT_THAT(ParseBytes(c), StatusIs(absl::StatusCode::kDataLoss, "past the end"));
  GgufBytes dup;
  dup.Tensor("a", {8}, 0, testing::RandomBytes(32, 5))
      .Tensor("a", {8}, 0, testing::RandomBytes(32, 6));
  EXPECT_THAT(ParseBytes(dup.Build()), StatusIs(absl::StatusCode::kDataLoss, "appears twice"));
}

TEST(GgufFileTest, OpenMapsAFileAndReportsAMissingOne) {
  const std::string dir = testing::MakeTempDir("gguf");
  GgufBytes g = Valid();
  const std::vector<uint8_t> bytes = g.Build();
  testing::WriteBytes(dir + "/m.gguf", bytes);
  ASSERT_OK_AND_ASSIGN(auto f, GgufFile::Open(dir + "/m.gguf"));
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(std::memcmp(f->Data(*f->Find("v")), bytes.data() + g.tensor_data_starts[0], 32), 0);
  EXPECT_THAT(GgufFile::Open(dir + "/absent.gguf"),
              StatusIs(absl::StatusCode::kNotFound, "absent.gguf"));
  testing::WriteBytes(dir + "/empty.gguf", {});
  EXPECT_THAT(GgufFile::Open(dir + "/empty.gguf"),
              StatusIs(absl::StatusCode::kDataLoss, "no GGUF magic"));
}

}  // namespace
}  // namespace moe::model
