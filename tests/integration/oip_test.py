"""tritonclient[grpc] against the router's Open Inference Protocol (MOE_ROUTER, set by
moe-cluster; the router runs with --model_name=tiny): health, server and model metadata, ModelInfer
in FP32, FP16 and BF16 (raw contents) and FP32 typed contents, per-layer model names and the
bare name with a `layer` parameter, requested outputs, the routing outputs against the float64
NumPy Mixtral block, and the error codes (unknown model, bad datatype, bad input name,
UNIMPLEMENTED for RPCs we do not offer)."""
import json
import os
import sys

import ml_dtypes
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mixtral_reference import chosen_experts, load_tensors, mixtral_block

checks = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    checks["passed" if condition else "failed"] += 1
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)), flush=True)


def error_of(fn):
    try:
        fn()
    except InferenceServerException as e:
        return e.status() or "", e.message() or ""
    return "no error", ""


def rel(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def main():
    folder = sys.argv[1]
    config = json.load(open(os.path.join(folder, "config.json")))
    t = load_tensors(folder)
    hidden, top_k = config["hidden_size"], config["num_experts_per_tok"]
    client = triton.InferenceServerClient(url=os.environ["MOE_ROUTER"])
    check("ServerLive", client.is_server_live())
    check("ServerReady (every expert has a worker up)", client.is_server_ready())
    check("ModelReady tiny-layer-1", client.is_model_ready("tiny-layer-1"))
    check("ModelReady of an unknown model is false", not client.is_model_ready("tiny-layer-9"))
    meta = client.get_server_metadata()
    check("ServerMetadata names moe-serve", meta.name == "moe-serve" and meta.version != "", meta)
    m = client.get_model_metadata("tiny-layer-0")
    check("ModelMetadata: hidden_states in; output, expert_ids, expert_weights out",
          [i.name for i in m.inputs] == ["hidden_states"] and list(m.inputs[0].shape) == [-1, hidden] and
          [o.name for o in m.outputs] == ["output", "expert_ids", "expert_weights"] and
          list(m.outputs[1].shape) == [-1, top_k], m)

    rng = np.random.default_rng(5)
    for layer in range(config["num_hidden_layers"]):
        x = rng.standard_normal((7, hidden)).astype(np.float32)
        want = mixtral_block(t, layer, x.astype(np.float64), top_k)
        inp = triton.InferInput("hidden_states", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        r = client.infer(f"tiny-layer-{layer}", [inp], request_id="req-7")
        out, ids, w = r.as_numpy("output"), r.as_numpy("expert_ids"), r.as_numpy("expert_weights")
        check(f"layer {layer}: FP32 ModelInfer = the NumPy block (rel err {rel(out, want):.2e})",
              out.dtype == np.float32 and out.shape == x.shape and rel(out, want) <= 1e-5)
        check(f"layer {layer}: expert_ids are the reference's choice, expert_weights sum to 1",
              ids.dtype == np.int32 and ids.tolist() == chosen_experts(t, layer, x.astype(np.float64), top_k) and
              np.allclose(w.sum(axis=1), 1.0, atol=1e-6), ids)
        check(f"layer {layer}: the request id comes back", r.get_response().id == "req-7")

        half = triton.InferInput("hidden_states", list(x.shape), "FP16")
        half.set_data_from_numpy(x.astype(np.float16))
        out16 = client.infer(f"tiny-layer-{layer}", [half]).as_numpy("output")
        check(f"layer {layer}: FP16 in, FP16 out (rel err {rel(out16, want):.2e} <= 1e-2)",
              out16.dtype == np.float16 and rel(out16, want) <= 1e-2)
        bf = triton.InferInput("hidden_states", list(x.shape), "BF16")
        bf.set_data_from_numpy(x.astype(ml_dtypes.bfloat16))
        outbf = client.infer(f"tiny-layer-{layer}", [bf]).as_numpy("output")
        check(f"layer {layer}: BF16 in, BF16 out (rel err {rel(outbf, want):.2e} <= 3e-2)",
              outbf is not None and outbf.shape == x.shape and rel(outbf, want) <= 3e-2)

    x = rng.standard_normal((3, hidden)).astype(np.float32)
    want = mixtral_block(t, 1, x.astype(np.float64), top_k)
    inp = triton.InferInput("hidden_states", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = client.infer("tiny", [inp], parameters={"layer": 1}, outputs=[triton.InferRequestedOutput("output")])
    check("the bare model name with parameter layer=1, only 'output' requested",
          rel(r.as_numpy("output"), want) <= 1e-5 and r.as_numpy("expert_ids") is None)

    # Typed contents (fp32_contents) instead of raw bytes, through tritonclient's own generated stubs.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(client._channel)
    req = service_pb2.ModelInferRequest(model_name="tiny-layer-1")
    tensor = req.inputs.add(name="hidden_states", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    resp = stub.ModelInfer(req, timeout=30)
    got = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(x.shape)
    check("FP32 typed contents in, raw output back", rel(got, want) <= 1e-5)

    code, msg = error_of(lambda: client.infer("nope", [inp]))
    check("unknown model: NOT_FOUND", code == "StatusCode.NOT_FOUND" and "tiny-layer-<L>" in msg, (code, msg))
    code, msg = error_of(lambda: client.infer("tiny", [inp]))
    check("the bare name without a layer: INVALID_ARGUMENT", code == "StatusCode.INVALID_ARGUMENT", (code, msg))
    bad = triton.InferInput("hidden_states", [1, hidden], "INT32")
    bad.set_data_from_numpy(np.zeros((1, hidden), np.int32))
    code, msg = error_of(lambda: client.infer("tiny-layer-0", [bad]))
    check("INT32 input: INVALID_ARGUMENT", code == "StatusCode.INVALID_ARGUMENT" and "datatype" in msg, (code, msg))
    wrong = triton.InferInput("x", [1, hidden], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, hidden), np.float32))
    code, msg = error_of(lambda: client.infer("tiny-layer-0", [wrong]))
    check("an input not named hidden_states: INVALID_ARGUMENT", code == "StatusCode.INVALID_ARGUMENT", (code, msg))
    short = triton.InferInput("hidden_states", [1, hidden + 1], "FP32")
    short.set_data_from_numpy(np.zeros((1, hidden + 1), np.float32))
    code, msg = error_of(lambda: client.infer("tiny-layer-0", [short]))
    check("wrong hidden size: INVALID_ARGUMENT (as MoeService)", code == "StatusCode.INVALID_ARGUMENT", (code, msg))
    code, msg = error_of(lambda: client.get_model_config("tiny-layer-0"))
    check("ModelConfig (not offered): UNIMPLEMENTED", code == "StatusCode.UNIMPLEMENTED", (code, msg))

    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
