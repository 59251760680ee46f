"""A client that is not ours: Debian's python3-grpcio with stubs generated from proto/.

Reads the f32 checkpoint with numpy alone and computes the Mixtral block from routing.md in
float64 (mixtral_reference.py), and checks moe-serve's Forward against it, plus two error
codes. Run by python_client_test.sh inside `moe-cluster -- ...` (MOE_ROUTER names the router).
"""
import json
import os
import sys

import grpc
import numpy as np

sys.path.insert(0, os.environ["MOE_PY_STUBS"])
from moe.v1 import moe_pb2, moe_pb2_grpc  # noqa: E402

from mixtral_reference import load_tensors, mixtral_block  # noqa: E402

checks = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    checks["passed" if condition else "failed"] += 1
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))


def main():
    folder = sys.argv[1]
    config = json.load(open(os.path.join(folder, "config.json")))
    tensors = load_tensors(folder)
    hidden = config["hidden_size"]
    channel = grpc.insecure_channel(os.environ["MOE_ROUTER"])
    stub = moe_pb2_grpc.MoeServiceStub(channel)

    info = stub.GetModelInfo(moe_pb2.GetModelInfoRequest(), timeout=30)
    check("GetModelInfo reports the checkpoint's dims",
          info.hidden_size == hidden and info.num_experts == config["num_local_experts"], str(info))

    rng = np.random.default_rng(7)
    for layer in range(config["num_hidden_layers"]):
        x = rng.standard_normal((9, hidden)).astype(np.float32)
        request = moe_pb2.ForwardRequest(layer=layer, hidden_states=moe_pb2.Tensor(
            dtype=moe_pb2.DTYPE_F32, shape=list(x.shape), data=x.tobytes()))
        response = stub.Forward(request, timeout=30)
        got = np.frombuffer(response.output.data, dtype="<f4").reshape(list(response.output.shape))
        want = mixtral_block(tensors, layer, x.astype(np.float64), config["num_experts_per_tok"])
        err = np.abs(got - want).max() / np.abs(want).max()
        check(f"layer {layer}: Forward matches the NumPy Mixtral block (rel err {err:.2e})", err <= 1e-5)

    bad = moe_pb2.ForwardRequest(layer=99, hidden_states=moe_pb2.Tensor(
        dtype=moe_pb2.DTYPE_F32, shape=[1, hidden], data=bytes(4 * hidden)))
    try:
        stub.Forward(bad, timeout=30)
        check("unknown layer is NOT_FOUND", False, "call succeeded")
    except grpc.RpcError as e:
        check("unknown layer is NOT_FOUND", e.code() == grpc.StatusCode.NOT_FOUND, str(e.code()))
    bad.layer = 0
    bad.hidden_states.shape[:] = [1, hidden + 1]
    try:
        stub.Forward(bad, timeout=30)
        check("wrong hidden size is INVALID_ARGUMENT", False, "call succeeded")
    except grpc.RpcError as e:
        check("wrong hidden size is INVALID_ARGUMENT", e.code() == grpc.StatusCode.INVALID_ARGUMENT, str(e.code()))

    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
