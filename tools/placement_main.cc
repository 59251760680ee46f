// tools/placement_main.cc
// moe-placement: plans, before anything starts, which routed experts each host serves so that
// they fit each host's memory in the checkpoint's resident format (as moe-expert would hold them,
// --quantize and --cpu_compute included) and — given a load profile, a scrape of a router's
// /metrics — so that the hosts' loads are even, with redundant replicas of the hottest experts.
// The plan is layer-uniform (a host serves the same expert ids in every MoE layer, what
// moe-expert --experts expresses), from the load summed over layers; the router's
// --rebalance=auto refines it per layer while serving. Prints the plan, its predicted imbalance,
// and the moe-expert and moe-router command lines. Reads one expert's tensors (to size it), not
// the checkpoint. Uses the router's planner (router/expert_placement.h).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/byte_size.h"
#include "base/program.h"
#include "experts/cpu/cpu_backend.h"
#include "experts/expert_weights.h"
#include "model/checkpoint.h"
#include "model/formats/weight_format.h"
#include "router/expert_placement.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint folder or GGUF file. Required.");
ABSL_FLAG(std::vector<std::string>, hosts, {},
          "Hosts and the memory each gives its expert worker: NAME:SIZE,... (e.g. h1:64GiB,h2:48GiB; NAME may be "
          "host:port, used as the worker's address). Required.");
ABSL_FLAG(std::string, load, "",
          "A load profile: a saved scrape of a router's /metrics (moe_expert_tokens_routed_total per expert). "
          "Without it every expert counts as equally loaded.");
ABSL_FLAG(int, redundant_experts, 0, "Extra replicas for the hottest experts (with --load).");
ABSL_FLAG(std::string, quantize, "", "As moe-expert --quantize: the resident format to size the experts in.");
ABSL_FLAG(std::string, cpu_compute, "auto", "As moe-expert --cpu_compute (f32 widens bf16 weights: twice the bytes).");
ABSL_FLAG(int, port, 50061, "Worker port for hosts given without one.");

namespace {

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "moe-placement: %s\n", message.c_str());
  return code;
}

// Pairs per expert from a Prometheus text scrape: moe_expert_tokens_routed_total{expert="E"} V.
absl::StatusOr<std::vector<double>> ReadLoad(const std::string& path, int experts) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --load=", path));
  std::vector<double> load(experts, 0.0);
  int found = 0;
  constexpr absl::string_view kSeries = "moe_expert_tokens_routed_total{expert=\"";
  for (std::string line; std::getline(in, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, kSeries)) continue;
    const size_t quote = rest.find('"');
    int e = -1;
    double v = 0;
    if (quote == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, quote), &e)) continue;
    const size_t space = rest.rfind(' ');
    if (space == absl::string_view::npos || !absl::SimpleAtod(rest.substr(space + 1), &v)) continue;
    if (e < 0 || e >= experts || v < 0) continue;
    load[e] = v;
    ++found;
  }
  if (found == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has no moe_expert_tokens_routed_total series (save a router's /metrics)"));
  }
  return load;
}

}  // namespace

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
      "Plans which experts each host serves, within its memory, balanced by a load profile.\n"
      "  moe-placement --checkpoint=/models/mixtral --hosts=h1:64GiB,h2:64GiB,h3:32GiB\n"
      "  moe-placement --checkpoint=/models/mixtral --hosts=h1:64GiB,h2:64GiB --load=router-metrics.txt "
      "--redundant_experts=2");
  const std::string dir = absl::GetFlag(FLAGS_checkpoint);
  const std::vector<std::string> host_flags = absl::GetFlag(FLAGS_hosts);
  if (dir.empty() || host_flags.empty()) return Fail("--checkpoint and --hosts are required (see --help)", 2);
  std::vector<std::string> names, sizes;
  std::vector<int64_t> memory;
  for (const std::string& h : host_flags) {
    const size_t colon = h.rfind(':');
    if (colon == std::string::npos || colon == 0) return Fail(absl::StrCat("--hosts: '", h, "' is not NAME:SIZE"), 2);
    absl::StatusOr<int64_t> bytes = moe::base::ParseByteSize(h.substr(colon + 1));
    if (!bytes.ok()) return Fail(absl::StrCat("--hosts: ", bytes.status().message()), 2);
    std::string name = h.substr(0, colon);
    if (name.find(':') == std::string::npos) absl::StrAppend(&name, ":", absl::GetFlag(FLAGS_port));
    names.push_back(name);
    sizes.push_back(h.substr(colon + 1));
    memory.push_back(*bytes);
  }
  auto checkpoint = moe::model::Checkpoint::Open(dir);
  if (!checkpoint.ok()) return Fail(checkpoint.status().ToString(), 1);
  const moe::model::ModelConfig& config = (*checkpoint)->config();
  int first_moe = -1, moe_layers = 0;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.IsMoeLayer(layer)) continue;
    if (first_moe < 0) first_moe = layer;
    ++moe_layers;
  }
  if (first_moe < 0) return Fail("the checkpoint has no MoE layer", 1);
  // One expert's resident bytes, as moe-expert would hold it.
  moe::experts::CpuExpertBackend::Options options;
  options.f32_compute = absl::GetFlag(FLAGS_cpu_compute) == "f32";
  if (const std::string q = absl::GetFlag(FLAGS_quantize); !q.empty()) {
    options.quantize = moe::model::FindWeightFormat(q);
    if (options.quantize == nullptr || options.quantize->quantize == nullptr) {
      return Fail(absl::StrCat("--quantize: no format '", q, "'"), 2);
    }
  }
  auto weights = moe::experts::LoadExpertWeights(**checkpoint, {first_moe, 0}, {.keep_quantized = true});
  if (!weights.ok()) return Fail(weights.status().ToString(), 1);
  auto per_expert = moe::experts::CpuExpertBackend::ResidentBytesOf(*weights, options);
  if (!per_expert.ok()) return Fail(per_expert.status().ToString(), 1);
  const int64_t per_id = *per_expert * moe_layers;  // one expert id on a host: all its MoE layers

  std::vector<double> load(config.num_experts, 1.0);
  const bool profiled = !absl::GetFlag(FLAGS_load).empty();
  if (profiled) {
    auto read = ReadLoad(absl::GetFlag(FLAGS_load), config.num_experts);
    if (!read.ok()) return Fail(read.status().ToString(), 2);
    load = *read;
  }
  moe::router::PlacementProblem problem;
  problem.num_workers = static_cast<int>(names.size());
  problem.load = {load};
  problem.redundant = profiled ? std::max(0, absl::GetFlag(FLAGS_redundant_experts)) : 0;
  int64_t total_slots = 0;
  for (int64_t m : memory) {
    problem.slots.push_back(m / per_id);
    total_slots += m / per_id;
  }
  std::printf("checkpoint %s: %s, %d routed experts × %d MoE layers; one expert %s resident (%s over its layers)\n",
              dir.c_str(), config.model_type.c_str(), config.num_experts, moe_layers,
              moe::base::FormatByteSize(*per_expert).c_str(), moe::base::FormatByteSize(per_id).c_str());
  const moe::router::PlacementResult plan = moe::router::PlanPlacement(problem);
  if (!plan.error.empty()) {
    return Fail(absl::StrCat("the experts do not fit: the hosts have room for ", total_slots, " expert ids, the model has ",
                             config.num_experts, " (", plan.error, ")"),
                1);
  }
  std::vector<std::vector<int>> of_host(names.size());
  for (int e = 0; e < config.num_experts; ++e) {
    for (int w : plan.replicas[0][e]) of_host[w].push_back(e);
  }
  std::printf("%-24s %10s %6s %10s  %s\n", "host", "memory", "room", "load", "experts");
  std::vector<double> host_load(names.size(), 0.0);
  for (int e = 0; e < config.num_experts; ++e) {
    for (int w : plan.replicas[0][e]) host_load[w] += load[e] / plan.replicas[0][e].size();
  }
  double total = 0;
  for (double l : load) total += l;
  for (size_t w = 0; w < names.size(); ++w) {
    std::printf("%-24s %10s %6ld %9.1f%%  %s\n", names[w].c_str(), moe::base::FormatByteSize(memory[w]).c_str(),
                static_cast<long>(problem.slots[w]), total > 0 ? 100 * host_load[w] / total : 0.0,
                of_host[w].empty() ? "(none)" : absl::StrJoin(of_host[w], ",").c_str());
  }
  std::printf("predicted imbalance (max/mean host load%s): %.2f\n", profiled ? "" : ", experts equally loaded",
              plan.imbalance_after);
  std::printf("\ncommands:\n");
  for (size_t w = 0; w < names.size(); ++w) {
    if (of_host[w].empty()) continue;
    std::printf("  %s: moe-expert --checkpoint=%s --experts=%s --listen=0.0.0.0:%s --memory_budget=%s%s%s\n",
                names[w].c_str(), dir.c_str(), absl::StrJoin(of_host[w], ",").c_str(),
                names[w].substr(names[w].rfind(':') + 1).c_str(), sizes[w].c_str(),
                absl::GetFlag(FLAGS_quantize).empty() ? "" : (" --quantize=" + absl::GetFlag(FLAGS_quantize)).c_str(),
                options.f32_compute ? " --cpu_compute=f32" : "");
  }
  std::vector<std::string> used;
  for (size_t w = 0; w < names.size(); ++w) {
    if (!of_host[w].empty()) used.push_back(names[w]);
  }
  std::printf("  router: moe-router --checkpoint=%s --workers=%s\n", dir.c_str(), absl::StrJoin(used, ",").c_str());
  return 0;
}
