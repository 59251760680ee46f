"""The whole-model client end to end: `python -m moe_serve.generate` and batched generation.

A tiny Qwen3-MoE model (transformers, random weights) is written with save_pretrained beside a real
byte-level BPE tokenizer trained by the `tokenizers` package (with a chat template; the demo's
model, client/python/examples/tiny_chat_model.py), and served by a router with two workers. Checked against Hugging Face's own full model:
- the command streams exactly the text HF's greedy generate() decodes to, with --chat through
  the chat template too, and with seeded sampling; it prints its speed and time split; it refuses
  bad arguments (exit 2) and a dead router or a mismatched checkpoint (exit 1, saying why);
- moe_serve.hf.from_pretrained with a batch of prompts of different lengths (left padding) gives
  each prompt the tokens it gets alone, and HF's full model gives the same batch the same tokens;
- several client processes at once against the one router get what each gets alone;
- a router that stops answering (SIGSTOP) fails generate() with DEADLINE_EXCEEDED after the
  client's timeout instead of hanging it, and it works again once the router answers.
Run by ctest with the torch venv's python (scripts/test.sh passes it as MOE_TORCH_PYTHON).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import grpc
import torch
import transformers

from moe_processes import Checks, Cluster

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client", "python")
sys.path.insert(0, CLIENT)
import moe_serve  # noqa: E402
import moe_serve.hf  # noqa: E402

sys.path.insert(0, os.path.join(CLIENT, "examples"))
import tiny_chat_model  # noqa: E402  (the demo's model: tiny Qwen3-MoE + trained BPE tokenizer)

PROMPTS = ["Once upon a time", "The router computes the gate of each token", "Experts"]
NEW = 12


def hf_new_tokens(model, ids, **kw):
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, pad_token_id=0, **kw)
    return out[0, ids.shape[1]:]


def run_command(args, env):
    return subprocess.run([sys.executable, "-m", "moe_serve.generate", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def command_checks(check, model, tok, ckpt, router, env):
    base = ["--checkpoint", ckpt, "--router", router, "--max-new-tokens", str(NEW), "--dtype", "float32"]
    prompt = PROMPTS[0]
    # Greedy.
    want = tok.decode(hf_new_tokens(model, tok(prompt, return_tensors="pt")["input_ids"]), skip_special_tokens=True)
    r = run_command(base + ["--prompt", prompt], env)
    check(r.returncode == 0 and r.stdout == want,
          f"generate command, greedy: streamed {r.stdout!r} (HF: {want!r}), exit {r.returncode} {r.stderr[-300:]}")
    check("tokens/s" in r.stderr and "client compute" in r.stderr and "MoE round trips" in r.stderr,
          f"generate command prints its speed and time split: {r.stderr.strip().splitlines()[-2:]}")
    # Chat template.
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    want = tok.decode(hf_new_tokens(model, ids), skip_special_tokens=True)
    r = run_command(base + ["--prompt", prompt, "--chat"], env)
    check(r.returncode == 0 and r.stdout == want,
          f"generate command, --chat ({ids.shape[1]} templated tokens): streamed {r.stdout!r} (HF: {want!r})")
    # Seeded sampling: what HF samples with the same seed.
    torch.manual_seed(5)
    want = tok.decode(hf_new_tokens(model, tok(prompt, return_tensors="pt")["input_ids"], do_sample=True,
                                    temperature=0.8, top_p=0.9), skip_special_tokens=True)
    r = run_command(base + ["--prompt", prompt, "--temperature", "0.8", "--top-p", "0.9", "--seed", "5"], env)
    check(r.returncode == 0 and r.stdout == want,
          f"generate command, sampling with --seed 5: streamed {r.stdout!r} (HF with the same seed: {want!r})")
    # Refusals.
    r = run_command(base + ["--prompt", prompt, "--max-new-tokens", "0"], env)
    check(r.returncode == 2 and "--max-new-tokens" in r.stderr, f"--max-new-tokens 0 refused: exit {r.returncode}")
    r = run_command(["--checkpoint", ckpt, "--router", "127.0.0.1:1", "--prompt", prompt, "--timeout", "5"], env)
    check(r.returncode == 1 and "UNAVAILABLE" in r.stderr and "Traceback" not in r.stderr,
          f"a dead router: exit {r.returncode}, {r.stderr.strip()[-160:]!r}")


def batch_checks(check, model, tok, ckpt, router):
    tok.padding_side = "left"
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    with moe_serve.Client(router, timeout=60) as client:
        served = moe_serve.hf.from_pretrained(ckpt, client, dtype=torch.float32)
        alone = [hf_new_tokens(served, tok(p, return_tensors="pt")["input_ids"]).tolist() for p in PROMPTS]
        with torch.no_grad():
            out = served.generate(**batch, max_new_tokens=NEW, do_sample=False, pad_token_id=tok.pad_token_id)
            hf = model.generate(**batch, max_new_tokens=NEW, do_sample=False, pad_token_id=tok.pad_token_id)
    together = out[:, batch["input_ids"].shape[1]:].tolist()
    lengths = [len(tok(p)["input_ids"]) for p in PROMPTS]
    check(together == alone, f"a batch of {len(PROMPTS)} prompts ({lengths} tokens, left-padded): each gets the "
                             f"tokens it gets alone ({'identical' if together == alone else 'DIFFER'})")
    check(torch.equal(out, hf), "the same batch through HF's full model: identical tokens")
    return alone


CONCURRENT = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import moe_serve, moe_serve.hf
import transformers
from transformers import AutoTokenizer
transformers.utils.logging.disable_progress_bar()
ckpt, router, prompt = sys.argv[2], sys.argv[3], sys.argv[4]
tok = AutoTokenizer.from_pretrained(ckpt)
model = moe_serve.hf.from_pretrained(ckpt, router, dtype=torch.float32)
ids = tok(prompt, return_tensors="pt")["input_ids"]
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # every process starts generating on the same signal
with torch.no_grad():
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=%d, do_sample=False, pad_token_id=0)
print(json.dumps(out[0, ids.shape[1]:].tolist()))
""" % NEW


def concurrent_checks(check, ckpt, router, alone, env):
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, CLIENT, ckpt, router, p], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for p in PROMPTS]
    for p in procs:  # all loaded, then all released at once
        check(p.stdout.readline().strip() == "ready", "a client process loaded the model")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    got = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        got.append(json.loads(out.strip().splitlines()[-1]) if p.returncode == 0 else None)
    check(got == alone, f"{len(procs)} client processes generating at once against one router: each gets the "
                        f"tokens it gets alone ({'identical' if got == alone else 'DIFFER'})")


def router_pid(ckpt):
    """The pid of the moe-router serving `ckpt` (from /proc)."""
    for entry in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"moe-router") and f"--checkpoint={ckpt}".encode() in argv:
            return int(entry)
    raise RuntimeError(f"no moe-router serving {ckpt}")


def hung_router_check(check, tok, ckpt, router):
    """A router that stops answering (SIGSTOP) fails the step with DEADLINE_EXCEEDED once the
    client's timeout passes; generate() does not hang."""
    pid = router_pid(ckpt)
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with moe_serve.Client(router, timeout=3) as client:
        served = moe_serve.hf.from_pretrained(ckpt, client, dtype=torch.float32)
        hf_new_tokens(served, ids)  # the stream is open and answering
        os.kill(pid, signal.SIGSTOP)
        try:
            start, outcome = time.monotonic(), None
            try:
                hf_new_tokens(served, ids)
            except moe_serve.MoeServeError as e:
                outcome = e
            took = time.monotonic() - start
        finally:
            os.kill(pid, signal.SIGCONT)
        check(outcome is not None and outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED,
              f"a router that stops answering: generate() raised {outcome} after {took:.1f} s (client timeout 3 s)")
        tokens = hf_new_tokens(served, ids).tolist()  # the next step opens a new stream
        check(len(tokens) == NEW, "the router answering again: the next generate() works")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    tmp = os.path.join(args.tmp, "hf_client")
    os.makedirs(tmp, exist_ok=True)
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    print(f"hf_client: torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    check = Checks()
    ckpt = os.path.join(tmp, "qwen3-moe-with-tokenizer")
    model, tok = tiny_chat_model.make(ckpt)
    env = dict(os.environ, PYTHONPATH=CLIENT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cluster = Cluster(args.bin, ckpt, 2, quiet=True)
    try:
        command_checks(check, model, tok, ckpt, cluster.router, env)
        alone = batch_checks(check, model, tok, ckpt, cluster.router)
        concurrent_checks(check, ckpt, cluster.router, alone, env)
        hung_router_check(check, tok, ckpt, cluster.router)
    finally:
        cluster.stop()
    # A checkpoint that is not the router's model: refused before anything is generated.
    other = os.path.join(tmp, "other")
    shutil.rmtree(other, ignore_errors=True)
    shutil.copytree(ckpt, other)
    config = json.load(open(os.path.join(other, "config.json")))
    config["num_hidden_layers"] = 3
    json.dump(config, open(os.path.join(other, "config.json"), "w"))
    cluster = Cluster(args.bin, ckpt, 0, quiet=True)
    try:
        r = run_command(["--checkpoint", other, "--router", cluster.router, "--prompt", "x"], env)
        check(r.returncode == 1 and "3 decoder layers vs the router's 4" in r.stderr,
              f"a checkpoint that is not the router's model refused: {r.stderr.strip()[-160:]!r}")
    finally:
        cluster.stop()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
