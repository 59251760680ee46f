// router/moe_layer.cc
#include "router/moe_layer.h"

#include "experts/status_macros.h"
#include "router/combine.h"
#include "router/dispatch_plan.h"

namespace moe::router {

absl::StatusOr<std::vector<float>> MoeLayer::Forward(absl::Span<const float> x, int64_t num_tokens,
                                                     experts::ExpertBackend& backend,
                                                     Routing* routing) const {
  ASSIGN_OR_RETURN(Routing r, gate_.Route(x, num_tokens));
  ASSIGN_OR_RETURN(std::vector<float> out, Run(x, num_tokens, r, backend));
  if (routing != nullptr) *routing = std::move(r);
  return out;
}

absl::StatusOr<std::vector<float>> MoeLayer::Run(absl::Span<const float> x, int64_t num_tokens,
                                                 const Routing& r, experts::ExpertBackend& backend) const {
  const int64_t h = gate_.hidden_size();
  ASSIGN_OR_RETURN(DispatchPlan plan, DispatchPlan::Build(r, gate_.num_slots()));
  std::vector<float> rows(static_cast<size_t>(plan.num_rows() * h));
  plan.Gather(x, h, 0, plan.num_rows(), rows.data());
  std::vector<experts::ExpertGroup> groups;
  for (int e = 0; e < plan.num_experts(); ++e) {
    if (plan.RowsOf(e) > 0) groups.push_back({{layer_, e}, plan.ExpertBegin(e), plan.RowsOf(e)});
  }
  std::vector<float> expert_out(rows.size());
  RETURN_IF_ERROR(backend.Run(groups, rows, absl::MakeSpan(expert_out)));
  std::vector<float> out(static_cast<size_t>(num_tokens * h));
  Combine(plan, expert_out, h, absl::MakeSpan(out));
  return out;
}

}  // namespace moe::router
