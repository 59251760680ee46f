// client/bench_main.cc
// moe-bench: drives a running router with C concurrent clients for T seconds or N requests per
// point, printing a progress line, then tokens/s, p50/p90/p99 latency and errors by code per
// token count; --json writes the same as JSON. --rate paces the offered load instead of running
// a closed loop (soak and overload runs at a fraction of capacity). --ping first measures an
// empty round trip on the same channel (a grpc.health.v1 Check): performance.md P6's denominator.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/program.h"
#include "client/moe_client.h"
#include "proto/message_memory.h"

ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle: talk TLS to the router and verify it with this.");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for a router that asks for one (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, auth_token_file, "", "File holding the router's bearer token (--auth_token_file there).");
ABSL_FLAG(std::string, router, "", "Router address (default: $MOE_ROUTER, else localhost:50051).");
ABSL_FLAG(int, concurrency, 1, "Concurrent clients, each with one request in flight.");
ABSL_FLAG(double, duration_s, 5, "Seconds per point (when --requests is 0).");
ABSL_FLAG(int64_t, requests, 0, "Requests per point in total; 0 = run for --duration_s.");
ABSL_FLAG(std::string, tokens, "16", "Comma-separated tokens per request; one point each.");
ABSL_FLAG(int64_t, layer, 0, "MoE layer to call.");
ABSL_FLAG(std::string, dtype, "f32", "Wire dtype: f32, bf16 or f16.");
ABSL_FLAG(int, warmup, 3, "Untimed requests per client before each point.");
ABSL_FLAG(int64_t, deadline_ms, 60000, "Deadline of each call.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(bool, stream, false,
          "Send each client's Forwards on one MoeService.ForwardStream instead of unary calls (same channel).");
ABSL_FLAG(int, backoff_ms, 0, "After a RESOURCE_EXHAUSTED answer, wait this long before the next request (overload runs).");
ABSL_FLAG(bool, refusals_ok, false,
          "Do not count RESOURCE_EXHAUSTED (admission control) as a failure in the exit status (overload runs).");
ABSL_FLAG(double, rate, 0,
          "Requests per second from all clients together, paced (client c sends its k-th request at "
          "(k * concurrency + c) / rate s, or at once when behind); 0 = closed loop, each client as fast as it can.");
ABSL_FLAG(bool, ping, false, "First time empty round trips (health Check) on the same channel, shown as tokens 0.");

namespace {

using moe::model::DType;
using moe::model::Tensor;

struct Point {
  int64_t tokens = 0, ok = 0;
  double seconds = 0, p50 = 0, p90 = 0, p99 = 0;
  std::vector<double> quantiles;  // latency at 0 %, 1 %, ..., 100 % (the CDF, for plots)
  std::map<std::string, int64_t> errors;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

// One request of client `c` (of --concurrency): its latency in seconds, or its error.
using Request = std::function<absl::StatusOr<double>(int c)>;

// Runs `request` from --concurrency threads for --duration_s or --requests, after --warmup
// untimed requests per client, with a progress line; `tokens` is what one request carries.
Point Drive(int64_t tokens, const Request& request) {
  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const int64_t total = absl::GetFlag(FLAGS_requests);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  for (int c = 0; c < concurrency; ++c) {
    for (int w = 0; w < absl::GetFlag(FLAGS_warmup); ++w) (void)request(c);
  }
  absl::Mutex mu;
  std::vector<double> latencies;
  Point point;
  point.tokens = tokens;
  std::atomic<int64_t> issued{0}, done{0};
  std::atomic<bool> stop{false};
  const double rate = absl::GetFlag(FLAGS_rate);
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      for (int64_t k = 0; !stop.load(); ++k) {
        if (total > 0 && issued.fetch_add(1) >= total) break;
        if (rate > 0) {  // the pacing of an offered load, not synchronisation
          const absl::Time due = start + absl::Seconds((static_cast<double>(k) * concurrency + c) / rate);
          if (total == 0 && due - start >= duration) break;
          absl::SleepFor(due - absl::Now());
        }
        if (total == 0 && absl::Now() - start >= duration) break;
        absl::StatusOr<double> r = request(c);
        if (absl::IsResourceExhausted(r.status()) && absl::GetFlag(FLAGS_backoff_ms) > 0) {
          absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_backoff_ms)));  // a client told to back off
        }
        absl::MutexLock lock(&mu);
        if (r.ok()) {
          ++point.ok;
          latencies.push_back(*r);
        } else {
          ++point.errors[absl::StatusCodeToString(r.status().code())];
        }
        done.fetch_add(1);
      }
    });
  }
  absl::Notification all_done;
  std::thread waiter([&] {
    for (std::thread& t : threads) t.join();
    all_done.Notify();
  });
  while (!all_done.WaitForNotificationWithTimeout(absl::Seconds(1))) {
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
    std::fprintf(stderr, "\r  %ld tokens/request: %ld requests, %.1f s, %.0f tokens/s   ", static_cast<long>(tokens),
                 static_cast<long>(done.load()), elapsed, done.load() * tokens / std::max(elapsed, 1e-9));
  }
  waiter.join();
  std::fprintf(stderr, "\r%80s\r", "");
  point.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  point.p50 = Percentile(latencies, 0.50);
  point.p90 = Percentile(latencies, 0.90);
  point.p99 = Percentile(latencies, 0.99);
  std::sort(latencies.begin(), latencies.end());
  for (int q = 0; q <= 100 && !latencies.empty(); ++q) {
    point.quantiles.push_back(latencies[std::min(latencies.size() - 1,
                                                 static_cast<size_t>(q / 100.0 * (latencies.size() - 1) + 0.5))]);
  }
  return point;
}

// Forward of `tokens` fresh random rows (seeded per client) to --layer.
Point ForwardPoint(moe::client::MoeClient& client, int64_t tokens, int64_t hidden, DType dtype) {
  std::vector<Tensor> inputs;
  for (int c = 0; c < std::max(1, absl::GetFlag(FLAGS_concurrency)); ++c) {
    std::mt19937_64 rng(1000 + c);
    std::normal_distribution<float> normal;
    std::vector<float> v(static_cast<size_t>(tokens * hidden));
    for (float& x : v) x = normal(rng);
    inputs.push_back(Tensor::FromF32(v, {tokens, hidden}).ConvertTo(dtype));
  }
  std::vector<std::unique_ptr<moe::client::ForwardStream>> streams;  // one per client, with --stream
  if (absl::GetFlag(FLAGS_stream)) {
    for (size_t c = 0; c < inputs.size(); ++c) streams.push_back(client.OpenStream());
  }
  Point point = Drive(tokens, [&](int c) -> absl::StatusOr<double> {
    auto r = streams.empty() ? client.Forward(absl::GetFlag(FLAGS_layer), inputs[c])
                             : streams[c]->Forward(absl::GetFlag(FLAGS_layer), inputs[c]);
    if (!r.ok()) return r.status();
    return absl::ToDoubleSeconds(r->latency);
  });
  for (auto& s : streams) (void)s->Close();
  return point;
}

// An empty unary round trip on the same channel: the health Check of the whole server.
Point PingPoint(moe::client::MoeClient& client) {
  return Drive(0, [&](int) -> absl::StatusOr<double> {
    const absl::Time start = absl::Now();
    absl::StatusOr<bool> serving = client.IsServing();
    if (!serving.ok()) return serving.status();
    if (!*serving) return absl::UnavailableError("not SERVING");
    return absl::ToDoubleSeconds(absl::Now() - start);
  });
}

}  // namespace

int main(int argc, char** argv) {
  moe::proto::KeepFreedMessageMemory();  // large messages reuse memory instead of page-faulting
  moe::base::InitProgram(argc, argv,
      "Load generator for a moe-router.\n"
      "  moe-bench --router=localhost:50051 --concurrency=4 --tokens=1,16,256 --duration_s=10");
  std::string address = absl::GetFlag(FLAGS_router);
  if (address.empty()) address = std::getenv("MOE_ROUTER") ? std::getenv("MOE_ROUTER") : "localhost:50051";
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  const DType dtype = dtype_name == "bf16" ? DType::kBF16 : dtype_name == "f16" ? DType::kF16 : DType::kF32;
  moe::client::MoeClient::Options options;
  options.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  if (absl::Status secured = moe::client::AddSecurity({.cert = absl::GetFlag(FLAGS_tls_cert),
                                                        .key = absl::GetFlag(FLAGS_tls_key),
                                                        .ca = absl::GetFlag(FLAGS_tls_ca)},
                                                       absl::GetFlag(FLAGS_auth_token_file), &options);
      !secured.ok()) {
    std::fprintf(stderr, "%s\n", secured.ToString().c_str());
    return 2;
  }
  auto client = moe::client::MoeClient::Connect(address, options);
  auto info = client->GetModelInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "moe-bench: %s\n", info.status().ToString().c_str());
    return 1;
  }
  std::printf("moe-bench: router %s (%s experts), layer %ld, %d client(s), %s\n", address.c_str(),
              info->local() ? "local" : "networked", static_cast<long>(absl::GetFlag(FLAGS_layer)),
              absl::GetFlag(FLAGS_concurrency), dtype_name.c_str());
  std::printf("%8s %9s %12s %10s %10s %10s  %s\n", "tokens", "requests", "tokens/s", "p50 ms", "p90 ms", "p99 ms", "errors");
  std::vector<std::string> json;
  int64_t failures = 0;
  std::vector<int64_t> points;  // 0 = the ping
  if (absl::GetFlag(FLAGS_ping)) points.push_back(0);
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',')) {
    int64_t tokens = 0;
    if (absl::SimpleAtoi(t, &tokens) && tokens >= 1) points.push_back(tokens);
  }
  for (int64_t tokens : points) {
    Point p = tokens == 0 ? PingPoint(*client) : ForwardPoint(*client, tokens, info->hidden_size(), dtype);
    std::vector<std::string> errs;
    int64_t refused = 0, other_errors = 0;  // refused: RESOURCE_EXHAUSTED (admission control)
    for (const auto& [code, count] : p.errors) {
      errs.push_back(absl::StrCat(code, "=", count));
      (code == "RESOURCE_EXHAUSTED" ? refused : other_errors) += count;
      if (!absl::GetFlag(FLAGS_refusals_ok) || code != "RESOURCE_EXHAUSTED") failures += count;
    }
    const double tps = p.ok * tokens / std::max(p.seconds, 1e-9);  // 0 for the ping
    std::printf("%8ld %9ld %12.0f %10.3f %10.3f %10.3f  %s\n", static_cast<long>(tokens), static_cast<long>(p.ok), tps,
                p.p50 * 1e3, p.p90 * 1e3, p.p99 * 1e3, errs.empty() ? "none" : absl::StrJoin(errs, " ").c_str());
    json.push_back(absl::StrFormat(
        R"({"tokens":%d,"requests":%d,"seconds":%g,"tokens_per_s":%g,"p50_s":%g,"p90_s":%g,"p99_s":%g,"errors":%d,)"
        R"("errors_by_code":{%s},"refused":%d,"other_errors":%d,"quantiles_s":[%s]})",
        tokens, p.ok, p.seconds, tps, p.p50, p.p90, p.p99, refused + other_errors,
        absl::StrJoin(p.errors, ",", [](std::string* out, const auto& e) {
          absl::StrAppend(out, absl::StrFormat(R"("%s":%d)", e.first, e.second));
        }),
        refused, other_errors,
        absl::StrJoin(p.quantiles, ",", [](std::string* out, double v) { absl::StrAppend(out, absl::StrFormat("%g", v)); })));
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << absl::StrFormat(R"({"router":"%s","local":%s,"concurrency":%d,"results":[%s]})", address,
                                           info->local() ? "true" : "false", absl::GetFlag(FLAGS_concurrency),
                                           absl::StrJoin(json, ",")) << "\n";
  }
  return failures > 0 ? 1 : 0;
}
