// server/router/micro_batches.h
// Overlap within one networked dispatch: a dispatch of at least `min_tokens` tokens is cut by
// token range into `parts` micro-batches of about equal size, all started at once, so the
// workers compute the first while the router still encodes and sends the next, and the router
// decodes and combines the first while the workers compute the last. Smaller dispatches go
// whole. Each micro-batch is a dispatch of its own (its own worker calls, failover and local
// always-on part); their outputs are joined in token order and `done` gets them with the whole
// routing, or the status of the first micro-batch (in token order) that failed.
// A token's experts, weights and summation order do not depend on the tokens it travels with,
// so the output is the serial path's up to the kernels' choice by row count (bf16/f32 ≤ 1e-6
// rel in our tests). Used by MoeServiceImpl (--micro_batches). Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <functional>

#include "server/router/dispatch_call.h"

namespace moe::server {

struct MicroBatching {
  int parts = 1;              // micro-batches per dispatch; 1 = off
  int64_t min_tokens = 256;   // dispatches of fewer tokens are sent whole
};

// Sends one dispatch (DispatchCall::Start on the worker pool; a fake in tests).
using StartDispatch =
    std::function<void(DispatchInput in, grpc::CallbackServerContext* context, DispatchCall::Done done)>;

// Starts `in` through `start`, whole or as `options.parts` micro-batches (see above). `in.plan`
// must have been built for `in.routing` (its slot count is reused). `done` is called exactly
// once, from whichever thread finishes the last micro-batch.
void StartMicroBatched(const MicroBatching& options, DispatchInput in, grpc::CallbackServerContext* context,
                       DispatchCall::Done done, const StartDispatch& start);

}  // namespace moe::server
