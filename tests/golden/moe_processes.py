"""What the golden tests share: the moe-serve processes they drive (a local cluster, moe-cluster,
and one call of moe-client), the serve-and-compare loop of the quantized-checkpoint tests, and
their tally of checks. Used by golden_parity_test.py (NumPy
reference), hf_parity_test.py and gpu_hf_parity.py (HF transformers); standard library and numpy
only, so it runs in any of their pythons."""
import json
import os
import signal
import subprocess

import numpy as np


class Cluster:
    """moe-cluster on `ckpt` with `workers` workers (0: a --local router), `worker_flags` added to each
    worker's; `router` is its address."""

    def __init__(self, bin_dir, ckpt, workers, shared_on_workers=False, f32_compute=False, quiet=False,
                 worker_flags=""):
        extra = " --cpu_compute=f32" if f32_compute else ""
        args = [f"{bin_dir}/moe-cluster", f"--checkpoint={ckpt}", f"--workers={workers}",
                f"--worker_flags=--threads=1{extra}{' ' + worker_flags if worker_flags else ''}"]
        if extra:
            args.append(f"--router_flags={extra.strip()}")
        if shared_on_workers:
            args.append("--shared_on_workers")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
                                     text=True)
        self.router = None
        for line in self.proc.stdout:  # moe-cluster prints the router first, then "running"
            if line.startswith("moe-cluster: router "):
                self.router = line.split()[2]
            if "running" in line:
                break
        if self.router is None:
            raise RuntimeError(f"moe-cluster did not start on {ckpt} (exit {self.proc.wait()})")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        if code != 0:
            raise RuntimeError(f"moe-cluster exited with {code}")


def run_client(bin_dir, router, layer, x, tmp):
    """One Forward of `x` ([tokens, hidden] float32) through layer `layer`: (output as float64,
    the routing moe-client saved: per token its experts and weights)."""
    x_path, out, routing = (os.path.join(tmp, n) for n in ("x.npy", "out.npy", "routing.json"))
    np.save(x_path, x)
    subprocess.run([f"{bin_dir}/moe-client", f"--router={router}", f"--npy={x_path}", f"--layer={layer}",
                    f"--save_output={out}", f"--save_routing={routing}"], check=True, stdout=subprocess.DEVNULL)
    return np.load(out).astype(np.float64), json.load(open(routing))


def serve_and_compare(check, bin_dir, ckpt, label, xs, refs, tmp, tie, tol, f32_compute=False):
    """Serves `ckpt` in-process and networked (two workers) and checks every layer's output against
    its float64 reference: refs[layer] starts (output, experts chosen per token, selection
    margins); the experts must be the same for tokens whose margin exceeds `tie` and the relative
    error of those tokens within `tol`. `f32_compute` passes --cpu_compute=f32."""
    for mode, workers in (("in-process", 0), ("networked", 2)):
        cluster = Cluster(bin_dir, ckpt, workers, f32_compute=f32_compute)
        try:
            for layer, x in enumerate(xs):
                got, routing = run_client(bin_dir, cluster.router, layer, x, tmp)
                ref_out, ref_chosen, margins = refs[layer][:3]
                clear = margins > tie
                same = all(sorted(routing[i]["experts"]) == sorted(ref_chosen[i]) for i in range(len(x)) if clear[i])
                err = np.abs(got[clear] - ref_out[clear]).max() / np.abs(ref_out[clear]).max()
                check(same and err <= tol,
                      f"{label}, {mode}, layer {layer}: experts {'identical' if same else 'DIFFER'} for "
                      f"{clear.sum()}/{len(x)} tokens without a near-tie, rel err {err:.2e}")
        finally:
            cluster.stop()


class Checks:
    """The tally of one test script: check(ok, what) prints "ok   what" or "FAIL what" and counts
    it; summary() prints "N passed, M failed" and returns the script's exit status."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(("ok   " if ok else "FAIL ") + what, flush=True)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0
