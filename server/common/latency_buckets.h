// server/common/latency_buckets.h
// The bucket boundaries that every latency histogram of the router and the workers shares, so
// that their quantiles compare. A pure function; safe from any thread.
#pragma once

#include "prometheus/histogram.h"

namespace moe::server {

// Buckets for latency histograms: 100 µs … ~100 s, ×2.
prometheus::Histogram::BucketBoundaries LatencyBuckets();

}  // namespace moe::server
