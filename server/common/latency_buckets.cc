// server/common/latency_buckets.cc
#include "server/common/latency_buckets.h"

namespace moe::server {

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1e-4; v < 120; v *= 2) b.push_back(v);
  return b;
}

}  // namespace moe::server
