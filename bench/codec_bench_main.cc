// bench/codec_bench_main.cc
// moe-bench-codec: what one hop costs in copies (performance.md P5). For payloads of 1–64 MB of
// f32 tokens it times, as gRPC does them, serializing an ExpertRequest into a ByteBuffer and
// parsing it back (grpc::SerializationTraits), and next to it a plain memcpy of the same bytes;
// P5 = (serialize + parse) ÷ memcpy. Also shown: encoding the rows into the request
// (proto::EncodeF32) and viewing the received tensor (proto::ViewTensor, no copy). The table is
// taken twice in one process: with glibc's default allocator settings, then after
// proto::KeepFreedMessageMemory (what the servers do). Median of --repeats; fresh random data.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "base/program.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "moe/v1/moe.pb.h"
#include "proto/message_memory.h"
#include "proto/tensor_codec.h"

ABSL_FLAG(int, repeats, 9, "Timed repetitions per point (after one warm-up); the median is shown.");

namespace {

double MedianMs(int repeats, const std::function<void()>& fn) {
  fn();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Prints one table of the costs per payload size; false if a parse did not give back the data.
bool Table(int repeats) {
  const int64_t hidden = 1024;
  std::printf("moe-bench-codec: ExpertRequest with f32 tokens [rows, %ld], median of %d\n", static_cast<long>(hidden),
              repeats);
  std::printf("%8s %10s %12s %12s %12s %12s %10s\n", "MB", "memcpy ms", "encode ms", "serialize ms", "parse ms",
              "view ms", "P5");
  std::mt19937 rng(2026);
  std::normal_distribution<float> normal;
  for (int64_t mb : {1, 4, 16, 64}) {
    const int64_t rows = mb * (1 << 20) / (hidden * 4);
    std::vector<float> x(static_cast<size_t>(rows * hidden));
    for (float& v : x) v = normal(rng);
    std::vector<char> copy(x.size() * sizeof(float));
    const double memcpy_ms = MedianMs(repeats, [&] { std::memcpy(copy.data(), x.data(), copy.size()); });

    moe::v1::ExpertRequest request;
    request.set_layer(0);
    moe::v1::ExpertGroup* g = request.add_groups();
    g->set_expert(0);
    g->set_num_rows(rows);
    const double encode_ms = MedianMs(repeats, [&] {
      moe::proto::EncodeF32(x, {rows, hidden}, moe::model::DType::kF32, request.mutable_tokens());
    });
    grpc::ByteBuffer buffer;
    const double serialize_ms = MedianMs(repeats, [&] {
      bool own = false;
      grpc::ByteBuffer fresh;
      (void)grpc::SerializationTraits<moe::v1::ExpertRequest>::Serialize(request, &fresh, &own);
      buffer.Swap(&fresh);
    });
    moe::v1::ExpertRequest parsed;
    const double parse_ms = MedianMs(repeats, [&] {
      grpc::ByteBuffer again(buffer);  // Deserialize consumes its buffer; the copy shares slices
      parsed.Clear();
      (void)grpc::SerializationTraits<moe::v1::ExpertRequest>::Deserialize(&again, &parsed);
    });
    double checksum = 0;
    const double view_ms = MedianMs(repeats, [&] {
      auto view = moe::proto::ViewTensor(parsed.tokens(), "tokens");
      checksum += view.ok() ? view->f32()[rows * hidden - 1] : 0;
    });
    if (parsed.tokens().data() != request.tokens().data()) {
      std::fprintf(stderr, "moe-bench-codec: the parsed tokens differ from the sent ones\n");
      return false;
    }
    std::printf("%8ld %10.3f %12.3f %12.3f %12.3f %12.4f %10.2f\n", static_cast<long>(mb), memcpy_ms, encode_ms,
                serialize_ms, parse_ms, view_ms, (serialize_ms + parse_ms) / memcpy_ms);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
      "Times one hop's serialization and parsing against memcpy (P5).\n"
      "  moe-bench-codec --repeats=9");
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  std::printf("== glibc's default allocator settings\n");
  if (!Table(repeats)) return 1;
  std::printf("\n== after proto::KeepFreedMessageMemory() (%s)\n",
              moe::proto::KeepFreedMessageMemory() ? "applied" : "refused by the C library");
  return Table(repeats) ? 0 : 1;
}
