// tests/testing/http_get.h
// A plain HTTP/1.0 GET to 127.0.0.1 (a Prometheus scrape of a server under test). Test-only.
#pragma once

#include <string>

namespace moe::testing {

// The whole response (status line, headers, body); empty if the connection fails.
std::string HttpGet(int port, const std::string& path);

// The value of the first sample of `metrics` (Prometheus text) whose line starts with `series`
// (a name with its labels, e.g. `moe_placement_generation` or `x{a="b"}`), or -1 if none.
double MetricValue(const std::string& metrics, const std::string& series);

}  // namespace moe::testing
