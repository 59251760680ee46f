"""The checks of security_test.sh, run inside moe-cluster (MOE_ROUTER, MOE_WORKERS; certificates
in MOE_TLS_DIR). Debian's grpcio with stubs generated from proto/."""
import os
import shutil
import sys
import time

import grpc
import numpy as np

sys.path.insert(0, os.environ["MOE_PY_STUBS"])
from moe.v1 import moe_pb2, moe_pb2_grpc  # noqa: E402

from mixtral_reference import load_tensors, mixtral_block  # noqa: E402

checks = {"passed": 0, "failed": 0}
D = os.environ["MOE_TLS_DIR"]
ROUTER = os.environ["MOE_ROUTER"]
WORKER = os.environ["MOE_WORKERS"].split(",")[0]


def check(name, condition, detail=""):
    checks["passed" if condition else "failed"] += 1
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)), flush=True)


def read(name):
    return open(os.path.join(D, name), "rb").read()


def tls(ca, client_cert=None):
    if client_cert is None:
        return grpc.ssl_channel_credentials(root_certificates=read(ca))
    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(client_cert + ".key"),
                                        certificate_chain=read(client_cert + ".crt"))


def forward(channel, x, token=None, layer=0):
    stub = moe_pb2_grpc.MoeServiceStub(channel)
    req = moe_pb2.ForwardRequest(layer=layer, hidden_states=moe_pb2.Tensor(
        dtype=moe_pb2.DTYPE_F32, shape=list(x.shape), data=x.tobytes()))
    metadata = [("authorization", f"Bearer {token}")] if token else None
    r = stub.Forward(req, timeout=10, metadata=metadata)
    return np.frombuffer(r.output.data, dtype="<f4").reshape(x.shape)


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def main():
    folder = sys.argv[1]
    t = load_tensors(folder)
    x = np.random.default_rng(2).standard_normal((5, 48)).astype(np.float32)
    want = mixtral_block(t, 0, x.astype(np.float64), 2)
    good = grpc.secure_channel(ROUTER, tls("ca1.crt"))
    got = forward(good, x, token="s3cret-token")
    err = np.abs(got - want).max() / np.abs(want).max()
    check(f"TLS + token: Forward through mTLS workers = the NumPy block (rel err {err:.2e})", err <= 1e-5)

    code, _ = code_of(lambda: forward(grpc.insecure_channel(ROUTER), x, token="s3cret-token"))
    check("a plaintext client is refused (UNAVAILABLE)", code == grpc.StatusCode.UNAVAILABLE, code)
    code, _ = code_of(lambda: forward(grpc.secure_channel(ROUTER, tls("ca2.crt")), x, token="s3cret-token"))
    check("a client trusting another CA is refused (UNAVAILABLE)", code == grpc.StatusCode.UNAVAILABLE, code)
    code, msg = code_of(lambda: forward(good, x))
    check("no token: UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED and "missing" in msg, (code, msg))
    code, msg = code_of(lambda: forward(good, x, token="s3cret-tokem"))
    check("a wrong token: UNAUTHENTICATED, the token not echoed",
          code == grpc.StatusCode.UNAUTHENTICATED and "tokem" not in msg, (code, msg))
    info_code, _ = code_of(lambda: moe_pb2_grpc.MoeServiceStub(good).GetModelInfo(moe_pb2.GetModelInfoRequest(),
                                                                                   timeout=10))
    check("GetModelInfo needs the token too", info_code == grpc.StatusCode.UNAUTHENTICATED, info_code)
    # grpc.health.v1.Health/Check of service "" (an empty request); SERVING is field 1 = 1.
    check_health = good.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda _: b"",
                                    response_deserializer=lambda b: b)
    check("health answers SERVING without a token (probes)", check_health(None, timeout=10) == b"\x08\x01")

    worker_stub = lambda creds: moe_pb2_grpc.ExpertServiceStub(grpc.secure_channel(WORKER, creds))  # noqa: E731
    code, _ = code_of(lambda: worker_stub(tls("ca1.crt")).GetWorkerInfo(moe_pb2.GetWorkerInfoRequest(), timeout=10))
    check("a worker called without a client certificate refuses (mTLS)", code == grpc.StatusCode.UNAVAILABLE, code)
    code, _ = code_of(lambda: worker_stub(tls("ca1.crt", "node-ca2")).GetWorkerInfo(moe_pb2.GetWorkerInfoRequest(),
                                                                                  timeout=10))
    check("a worker called with a certificate of a CA it trusts answers", code == grpc.StatusCode.OK, code)
    plain = moe_pb2_grpc.ExpertServiceStub(grpc.insecure_channel(WORKER))
    code, _ = code_of(lambda: plain.GetWorkerInfo(moe_pb2.GetWorkerInfoRequest(), timeout=5))
    check("a worker refuses plaintext (UNAVAILABLE)", code == grpc.StatusCode.UNAVAILABLE, code)

    # Rotation: the router's certificate is replaced by one from ca2 (files swapped in place,
    # each by an atomic rename). Within the reload interval new connections see it: a client
    # trusting only ca2 gets through, and router -> worker mTLS keeps working.
    for src, dst in (("node-ca2.key", "router.key"), ("node-ca2.crt", "router.crt")):
        shutil.copy(os.path.join(D, src), os.path.join(D, dst + ".new"))
        os.replace(os.path.join(D, dst + ".new"), os.path.join(D, dst))
    rotated, attempts = False, 0
    give_up = time.monotonic() + 60
    while not rotated and time.monotonic() < give_up:
        attempts += 1
        try:
            got2 = forward(grpc.secure_channel(ROUTER, tls("ca2.crt")), x, token="s3cret-token")
            rotated = np.abs(got2 - want).max() / np.abs(want).max() <= 1e-5
        except grpc.RpcError:
            time.sleep(0.2)  # the provider re-reads the files every second
    check(f"rotation without restart: a ca2 client is served after the files change ({attempts} attempts)", rotated)
    code, _ = code_of(lambda: forward(grpc.secure_channel(ROUTER, tls("ca1.crt")), x, token="s3cret-token"))
    check("after rotation a new ca1-only client is refused", code == grpc.StatusCode.UNAVAILABLE, code)

    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
