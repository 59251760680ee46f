// tests/model/tensor_test.cc
#include "model/tensor.h"

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace moe::model {
namespace {

TEST(TensorTest, ZerosIsOwnedAndZeroed) {
  Tensor t = Tensor::Zeros(DType::kBF16, {3, 5});
  EXPECT_TRUE(t.is_owned());
  EXPECT_EQ(t.num_elements(), 15);
  EXPECT_EQ(t.num_bytes(), 30u);
  EXPECT_EQ(t.DebugString(), "BF16[3, 5]");
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  for (size_t i = 0; i < t.num_bytes(); ++i) EXPECT_EQ(p[i], 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
}

TEST(TensorTest, BorrowDoesNotCopyAndKeepsHolderAlive) {
  auto storage = std::make_shared<std::vector<float>>(testing::RandomVector(6, 1));
  const float* data = storage->data();
  Tensor t = Tensor::Borrow(DType::kF32, {2, 3}, data, storage);
  std::weak_ptr<std::vector<float>> weak = storage;
  storage.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_FALSE(t.is_owned());
  EXPECT_EQ(t.f32().data(), data);
  t = Tensor();
  EXPECT_TRUE(weak.expired());
}

TEST(TensorTest, ConversionsRoundTrip) {
  const std::vector<float> v = testing::RandomVector(64, 2);
  Tensor f32 = Tensor::FromF32(v, {8, 8});
  Tensor bf16 = f32.ConvertTo(DType::kBF16);
  Tensor f16 = bf16.ConvertTo(DType::kF16);  // bf16 → f16 goes through f32
  EXPECT_EQ(bf16.dtype(), DType::kBF16);
  EXPECT_EQ(f16.shape(), f32.shape());
  Tensor back = bf16.ToF32();
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(back.f32()[i], BF16ToF32(F32ToBF16(v[i])));
    EXPECT_NEAR(F16ToF32(static_cast<const uint16_t*>(f16.raw_data())[i]), back.f32()[i],
                std::abs(back.f32()[i]) * 1e-3f);
  }
  Tensor clone = f32.Clone();
  clone.mutable_f32()[0] += 1.0f;
  EXPECT_NE(clone.f32()[0], f32.f32()[0]);
}

TEST(TensorTest, MatrixRowsIsAViewAndColumnsTransposedACopyOfOneMatrix) {
  // [2, 3, 4]: value = 100·n + 10·r + c.
  std::vector<float> v;
  for (int n = 0; n < 2; ++n)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) v.push_back(100.0f * n + 10.0f * r + c);
  const Tensor t = Tensor::FromF32(v, {2, 3, 4});
  const Tensor rows = t.MatrixRows(1, 1, 2);  // rows 1..2 of matrix 1
  EXPECT_EQ(rows.shape(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(rows.raw_data(), static_cast<const float*>(t.raw_data()) + 12 + 4);  // no copy
  EXPECT_EQ(rows.f32()[0], 110.0f);
  EXPECT_EQ(rows.f32()[7], 123.0f);
  const Tensor cols = t.MatrixColumnsTransposed(1, 1, 2);  // columns 1..2 of matrix 1, as [2, 3]
  EXPECT_EQ(cols.shape(), (std::vector<int64_t>{2, 3}));
  for (int j = 0; j < 2; ++j)
    for (int r = 0; r < 3; ++r) EXPECT_EQ(cols.f32()[j * 3 + r], 100.0f + 10.0f * r + (1 + j));
  const Tensor bf = t.ConvertTo(DType::kBF16).MatrixColumnsTransposed(0, 3, 1);
  EXPECT_EQ(bf.dtype(), DType::kBF16);
  EXPECT_EQ(bf.ToF32().f32()[2], 23.0f);
}

}  // namespace
}  // namespace moe::model
