"""The installed moe_serve package against a real cluster (MOE_ROUTER, set by moe-cluster):
Client.forward in float32, float16 and bfloat16 (ml_dtypes), any leading shape, against the float64 NumPy Mixtral block;
return_routing against the reference's choice; errors as MoeServeError with the gRPC code;
deadlines; AsyncClient; model_info; the package typed (py.typed). No torch here."""
import asyncio
import json
import os
import sys

import grpc
import ml_dtypes
import numpy as np

import moe_serve
from mixtral_reference import chosen_experts, load_tensors, mixtral_block

checks = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    checks["passed" if condition else "failed"] += 1
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)), flush=True)


def raises(fn, code):
    try:
        fn()
    except moe_serve.MoeServeError as e:
        return e.code == code, f"{e.code.name}: {e.message}"
    except Exception as e:  # noqa: BLE001 — any other exception is a failure of the check
        return False, f"{type(e).__name__}: {e}"
    return False, "no error"


def main():
    folder = sys.argv[1]
    config = json.load(open(os.path.join(folder, "config.json")))
    tensors = load_tensors(folder)
    hidden, top_k = config["hidden_size"], config["num_experts_per_tok"]
    router = os.environ["MOE_ROUTER"]
    check("imported from the installed package, not the source tree",
          "site-packages" in moe_serve.__file__, moe_serve.__file__)
    check("the package is typed (py.typed)", os.path.exists(os.path.join(os.path.dirname(moe_serve.__file__), "py.typed")))

    rng = np.random.default_rng(3)
    with moe_serve.Client(router, timeout=30) as client:
        info = client.model_info()
        check("model_info reports the checkpoint", info.model_type == config["model_type"] and
              info.hidden_size == hidden and info.num_layers == config["num_hidden_layers"], info)
        for layer in range(config["num_hidden_layers"]):
            x = rng.standard_normal((9, hidden)).astype(np.float32)
            want = mixtral_block(tensors, layer, x.astype(np.float64), top_k)
            got = client.forward(layer, x)
            err = np.abs(got - want).max() / np.abs(want).max()
            check(f"layer {layer}: float32 forward = the NumPy block (rel err {err:.2e})",
                  got.dtype == np.float32 and got.shape == x.shape and err <= 1e-5)
            half = client.forward(layer, x.astype(np.float16))
            err16 = np.abs(half.astype(np.float64) - want).max() / np.abs(want).max()
            check(f"layer {layer}: float16 in, float16 out (rel err {err16:.2e} <= 1e-2)",
                  half.dtype == np.float16 and err16 <= 1e-2)
            bf = client.forward(layer, x.astype(ml_dtypes.bfloat16))
            errbf = np.abs(bf.astype(np.float64) - want).max() / np.abs(want).max()
            check(f"layer {layer}: bfloat16 (ml_dtypes) in, bfloat16 out (rel err {errbf:.2e} <= 3e-2)",
                  bf.dtype == ml_dtypes.bfloat16 and errbf <= 3e-2)
            r = client.forward(layer, x, return_routing=True)
            ref = chosen_experts(tensors, layer, x.astype(np.float64), top_k)
            check(f"layer {layer}: return_routing gives each token's experts, best first",
                  r.expert_ids.shape == (9, top_k) and r.expert_ids.tolist() == ref and
                  np.allclose(r.expert_weights.sum(axis=1), 1.0, atol=1e-6), (r.expert_ids.tolist(), ref))
        x3 = rng.standard_normal((2, 5, hidden)).astype(np.float32)
        got3 = client.forward(0, x3)
        want3 = mixtral_block(tensors, 0, x3.reshape(10, hidden).astype(np.float64), top_k).reshape(2, 5, hidden)
        check("[batch, seq, hidden] in, the same shape out", got3.shape == x3.shape and
              np.abs(got3 - want3).max() / np.abs(want3).max() <= 1e-5)

        with client.stream() as stream:
            errs = []
            for step in range(6):
                x = rng.standard_normal((3, hidden)).astype(np.float32)
                errs.append(np.abs(stream.forward(step % 2, x) -
                                   mixtral_block(tensors, step % 2, x.astype(np.float64), top_k)).max())
            check(f"a ForwardStream answers 6 steps in order (max abs err {max(errs):.2e})", max(errs) <= 1e-5)
            ok, why = raises(lambda: stream.forward(99, x), grpc.StatusCode.NOT_FOUND)
            ok2, _ = raises(lambda: stream.forward(0, x), grpc.StatusCode.NOT_FOUND)
            check("a bad step ends the stream: that call and the next raise NOT_FOUND", ok and ok2, why)
        one = np.zeros((1, hidden), np.float32)
        ok, why = raises(lambda: client.forward(99, one), grpc.StatusCode.NOT_FOUND)
        check("unknown layer: MoeServeError NOT_FOUND", ok, why)
        ok, why = raises(lambda: client.forward(0, np.zeros((1, hidden + 1), np.float32)),
                         grpc.StatusCode.INVALID_ARGUMENT)
        check("wrong hidden size: MoeServeError INVALID_ARGUMENT", ok, why)
        ok, why = raises(lambda: client.forward(0, np.full((1, hidden), np.nan, np.float32)),
                         grpc.StatusCode.INVALID_ARGUMENT)
        check("NaN input: MoeServeError INVALID_ARGUMENT", ok, why)
        ok, why = raises(lambda: client.forward(0, rng.standard_normal((4096, hidden)).astype(np.float32),
                                                timeout=1e-4), grpc.StatusCode.DEADLINE_EXCEEDED)
        check("a deadline too short: MoeServeError DEADLINE_EXCEEDED", ok, why)
        try:
            client.forward(0, np.zeros((1, hidden), np.int64))
            check("an int64 array is refused before sending", False, "accepted")
        except TypeError as e:
            check("an int64 array is refused before sending (TypeError)", "not served" in str(e), e)
    with moe_serve.Client(router, model="no-such-model") as other:
        ok, why = raises(lambda: other.forward(0, np.zeros((1, hidden), np.float32)), grpc.StatusCode.NOT_FOUND)
        check("unknown model name: MoeServeError NOT_FOUND", ok, why)

    async def concurrent():
        async with moe_serve.AsyncClient(router, timeout=30) as aclient:
            xs = [rng.standard_normal((4, hidden)).astype(np.float32) for _ in range(4)]
            outs = await asyncio.gather(*(aclient.forward(i % 2, x) for i, x in enumerate(xs)))
            errs = [np.abs(o - mixtral_block(tensors, i % 2, x.astype(np.float64), top_k)).max() for i, (o, x) in
                    enumerate(zip(outs, xs))]
            info = await aclient.model_info()
            return max(errs), info.hidden_size
    err, h = asyncio.run(concurrent())
    check(f"AsyncClient: 4 concurrent forwards match the reference (max abs err {err:.2e})", err <= 1e-5 and h == hidden)

    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
