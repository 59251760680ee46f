"""Generate text from a prompt with a checkpoint whose MoE blocks a moe-serve router serves.

    python -m moe_serve.generate --checkpoint PATH --router HOST:PORT --prompt "Once upon a time"
        [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--chat] [--dtype D]

The client loads only the checkpoint's non-expert tensors (moe_serve.hf.from_pretrained), tokenizes
the prompt with the checkpoint's tokenizer (--chat: through its chat template), streams the text to
stdout as it is generated, then prints to stderr the prompt and decode speeds and where a decoding
step's time goes: the client's own compute (attention, norms, embeddings, sampling) and the round
trips to the router (its MoE compute included). Greedy unless --temperature > 0. torch's OpenMP
threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set). Needs torch and
transformers (`pip install 'moe-serve[hf]'`). Exit status 2 on bad arguments, 1 when the router or
the checkpoint fails (the message names why).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, List, Optional


def _args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m moe_serve.generate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True,
                    help="the model's folder (or hub id): config, tokenizer and the non-expert tensors are read")
    ap.add_argument("--router", required=True, help="the router serving that checkpoint, host:port")
    ap.add_argument("--prompt", required=True, help="the text to continue (with --chat: the user's message)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most (default 64)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="sampling temperature; 0 (default) decodes greedily")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass when sampling (default 1.0)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the sampler (default: not seeded)")
    ap.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                    help="dtype of the client's weights and of the hidden states sent (default: the checkpoint's)")
    ap.add_argument("--dense", action="store_true", help="also serve the dense MLPs from the router")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the client (default: torch's choice)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per call to the router (default 60)")
    ap.add_argument("--tls", action="store_true", help="connect to the router over TLS (system CA roots)")
    ap.add_argument("--token", default=None, help="bearer token sent to the router")
    args = ap.parse_args(argv)
    if args.max_new_tokens < 1:
        ap.error("--max-new-tokens must be at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        ap.error("--temperature must be >= 0 and --top-p in (0, 1]")
    return args


class _TimedStreamer:
    """A transformers streamer that prints the text as it comes (transformers' TextStreamer) and
    notes when each step ended and how long the router's round trips of each step took."""

    def __init__(self, tokenizer: Any, stats: Any, out: Any) -> None:
        from transformers import TextStreamer

        class _Out(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                out.write(text)
                out.flush()

        self.text = _Out(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stats = stats
        self.marks: List[tuple] = []  # (time, round-trip calls, round-trip seconds) at each put

    def put(self, value: Any) -> None:
        calls, _, seconds = self.stats.snapshot()
        self.marks.append((time.perf_counter(), calls, seconds))
        self.text.put(value)

    def end(self) -> None:
        self.text.end()


def _report(marks: List[tuple], prompt_tokens: int, err: Any) -> None:
    """Prints prefill and decode speed and the decode steps' time split. marks[0]: when generate()
    handed over the prompt, marks[1]: after the first token (the prefill), then one per step."""
    if len(marks) < 2:
        return
    start, first = marks[0], marks[1]
    prefill = first[0] - start[0]
    err.write(f"\nprompt: {prompt_tokens} tokens in {prefill * 1e3:.1f} ms ({prompt_tokens / prefill:.1f} tokens/s), "
              f"{first[1] - start[1]} round trips to the router taking {(first[2] - start[2]) * 1e3:.1f} ms\n")
    steps = len(marks) - 2
    if steps < 1:
        return
    last = marks[-1]
    decode = last[0] - first[0]
    trips, trip_s = last[1] - first[1], last[2] - first[2]
    per_step = decode / steps
    err.write(f"decode: {steps} tokens in {decode * 1e3:.1f} ms ({steps / decode:.1f} tokens/s); per step "
              f"{per_step * 1e3:.2f} ms = client compute {(decode - trip_s) / steps * 1e3:.2f} ms + "
              f"MoE round trips {trip_s / steps * 1e3:.2f} ms ({trips / steps:.0f} per step, "
              f"{trip_s / max(trips, 1) * 1e3:.3f} ms each)\n")


def main(argv: Optional[List[str]] = None) -> int:
    args = _args(argv)
    # While a step waits for the router, torch's OpenMP threads would spin on the cores the router
    # (or its workers) may be computing on; waiting passively measured 12.5 -> 16 decode tokens/s
    # with client and --local router sharing 2 cores (docs/BENCHMARKS.md). Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import transformers

    import moe_serve
    import moe_serve.hf

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        client = moe_serve.Client(args.router, tls=args.tls, token=args.token, timeout=args.timeout)
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.checkpoint)
        model = moe_serve.hf.from_pretrained(args.checkpoint, client, dense=args.dense, dtype=dtype)
    except (moe_serve.MoeServeError, ValueError, OSError) as e:
        print(f"moe_serve.generate: {e}", file=sys.stderr)
        return 1
    if args.chat:
        if not getattr(tokenizer, "chat_template", None):
            print(f"moe_serve.generate: {args.checkpoint}'s tokenizer has no chat template (--chat)", file=sys.stderr)
            return 1
        ids = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
    else:
        ids = tokenizer(args.prompt, return_tensors="pt")["input_ids"]
    if args.seed is not None:
        torch.manual_seed(args.seed)
    sampling = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p) if args.temperature > 0 \
        else dict(do_sample=False)
    streamer = _TimedStreamer(tokenizer, model.moe_serve.steps.stats, sys.stdout)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                           streamer=streamer, pad_token_id=pad, **sampling)
    except moe_serve.MoeServeError as e:
        print(f"\nmoe_serve.generate: the router failed a step: {e}", file=sys.stderr)
        return 1
    _report(streamer.marks, ids.shape[1], sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
