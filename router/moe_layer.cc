// router/moe_layer.cc
#include "router/moe_layer.h"

#include <memory>

#include "base/status_macros.h"
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
  // Gathered rows and expert outputs are written whole before they are read: no zero-fill
  // (each is 8 MB at 1024 tokens of the demo model).
  const size_t row_values = static_cast<size_t>(plan.num_rows() * h);
  const std::unique_ptr<float[]> rows = std::make_unique_for_overwrite<float[]>(row_values);
  plan.Gather(x, h, 0, plan.num_rows(), rows.get());
  std::vector<experts::ExpertGroup> groups;
  for (int e = 0; e < plan.num_experts(); ++e) {
    if (plan.RowsOf(e) > 0) groups.push_back({{layer_, e}, plan.ExpertBegin(e), plan.RowsOf(e)});
  }
  const std::unique_ptr<float[]> expert_out = std::make_unique_for_overwrite<float[]>(row_values);
  RETURN_IF_ERROR(backend.Run(groups, absl::MakeConstSpan(rows.get(), row_values),
                              absl::MakeSpan(expert_out.get(), row_values)));
  std::vector<float> out(static_cast<size_t>(num_tokens * h));
  Combine(plan, absl::MakeConstSpan(expert_out.get(), row_values), h, absl::MakeSpan(out));
  AddIdentity(r, x, h, absl::MakeSpan(out));
  return out;
}

}  // namespace moe::router
