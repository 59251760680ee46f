"""Client side of multihost_test.sh, run inside the client's network namespace with Debian's
python3-grpcio and stubs generated from proto/. Phases:
  prepare  — Forward with routing; keep tokens that avoid worker 1's experts and one that needs them;
  cut      — worker 1's link is down: the first still work (same output), the other fails
             UNAVAILABLE or DEADLINE_EXCEEDED from the router (naming the expert) before the
             client's own deadline;
  restored — the link is back: the request that failed succeeds again (retried until it does,
             each try bounded by the router's deadline).
"""
import json
import os
import sys
import time

import grpc
import numpy as np

sys.path.insert(0, os.environ["MOE_PY_STUBS"])
from moe.v1 import moe_pb2, moe_pb2_grpc  # noqa: E402

phase, state_path, router, worker1_experts = sys.argv[1], sys.argv[2], sys.argv[3], set(map(int, sys.argv[4].split(",")))
stub = moe_pb2_grpc.MoeServiceStub(grpc.insecure_channel(router))
results = {"passed": 0, "failed": 0}


def check(ok, what):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)


def forward(x, routing=False, timeout=20):
    req = moe_pb2.ForwardRequest(layer=0, return_routing=routing, hidden_states=moe_pb2.Tensor(
        dtype=moe_pb2.DTYPE_F32, shape=list(x.shape), data=x.astype("<f4").tobytes()))
    resp = stub.Forward(req, timeout=timeout)
    return np.frombuffer(resp.output.data, "<f4").reshape(list(resp.output.shape)), resp.routing


if phase == "prepare":
    hidden = stub.GetModelInfo(moe_pb2.GetModelInfoRequest(), timeout=20).hidden_size
    x = np.random.default_rng(5).standard_normal((200, hidden)).astype(np.float32)
    out, routing = forward(x, routing=True)
    free = [i for i, r in enumerate(routing) if not worker1_experts & set(r.experts)]
    needs = [i for i, r in enumerate(routing) if worker1_experts & set(r.experts)]
    check(len(free) > 0 and len(needs) > 0, f"{len(free)} tokens avoid worker 1, {len(needs)} need it")
    json.dump({"x_free": x[free].tolist(), "out_free": out[free].tolist(), "x_needs": x[needs[:1]].tolist()},
              open(state_path, "w"))
elif phase == "cut":
    s = json.load(open(state_path))
    out, _ = forward(np.array(s["x_free"], np.float32))
    before = np.array(s["out_free"])
    err = np.abs(out - before).max() / np.abs(before).max()  # a smaller batch may block GEMMs differently
    check(err <= 1e-5, f"tokens that avoid the cut worker are still served (rel diff {err:.1e})")
    try:
        forward(np.array(s["x_needs"], np.float32), timeout=20)
        check(False, "a token needing the cut worker failed")
    except grpc.RpcError as e:
        code_ok = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        check(code_ok and "expert" in e.details(),
              f"a token needing the cut worker fails {e.code().name} from the router: {e.details()}")
elif phase == "restored":
    s = json.load(open(state_path))
    ok = False
    attempt = 0
    # The router marks the worker up again at its first answered health check after the channel
    # reconnects (backoff <= 2 s); until then it answers UNAVAILABLE at once. Retry like a client
    # with a backoff, for at most 60 s.
    give_up = time.monotonic() + 60
    while not ok and time.monotonic() < give_up:
        attempt += 1
        try:
            forward(np.array(s["x_needs"], np.float32), timeout=20)
            ok = True
        except grpc.RpcError:
            time.sleep(0.1)
    check(ok, f"service resumes when the link returns (attempt {attempt})")
print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
