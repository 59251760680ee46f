"""Offload a Hugging Face transformers model's MoE blocks to a moe-serve router.

    import transformers, moe_serve, moe_serve.hf
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    offloaded = moe_serve.hf.offload(model, moe_serve.Client("localhost:50051"))
    model.generate(...)            # every MoE block now runs on the router and its workers
    offloaded.restore()            # put the original blocks back (if kept)

Each decoder layer's MLP block (`mlp`, `block_sparse_moe`, `feed_forward` or DBRX's `ffn`) that has experts is
replaced by a RemoteBlock, which sends the block's input to the router's layer of the same index
and returns its answer in the input's dtype (float32, bfloat16 or float16; no float round trip).
The steps go on one MoeService.ForwardStream per thread (unary Forwards with stream=False).
With dense=True the dense MLPs the router serves are replaced too. The router's answer for a layer
is the whole block: routed experts, shared experts and their gates (Granite's decoder-level
shared_mlp too, which is then switched off in the layer). The model must match the router's
GetModelInfo (model_type, hidden size, number of layers, which layers are MoE), else ValueError
names what differs. Gradients do not flow through a RemoteBlock (inference only). Needs torch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

import grpc
import torch

from moe_serve.client import Client
from moe_serve.errors import MoeServeError

_BLOCK_NAMES = ("mlp", "block_sparse_moe", "feed_forward", "ffn")  # ffn: DBRX
# Blocks whose forward returns (hidden_states, router scores); their decoder layers unpack two values.
_RETURNS_PAIR = ("Llama4TextMoe", "GptOssMLP")


class _Zero(torch.nn.Module):
    """Stands in for a decoder-level MLP whose output the router's answer already holds."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden_states)


class _Steps:
    """How the RemoteBlocks of one offload() reach the router: one MoeService.ForwardStream per
    thread (a decoding step's layers go one after another on it: measured 6-11 % less time per
    step than unary calls, docs/CLIENTS.md), or unary Forwards with stream=False or when the
    router has no ForwardStream (UNIMPLEMENTED). A failed step drops that thread's stream; the
    next step opens a new one. Each step is bounded by the router's --deadline_ms."""

    def __init__(self, client: Client, stream: bool) -> None:
        self.client, self.stream = client, stream
        self._local = threading.local()

    def forward(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if not self.stream:
            return self.client.forward(layer, x)
        s = getattr(self._local, "stream", None)
        if s is None:
            s = self._local.stream = self.client.stream()
        try:
            return s.forward(layer, x)
        except MoeServeError as e:
            self._local.stream = None
            if e.code == grpc.StatusCode.UNIMPLEMENTED:  # an older router: unary from now on
                self.stream = False
                return self.client.forward(layer, x)
            raise


class RemoteBlock(torch.nn.Module):
    """One decoder layer's MLP block served by the router: forward(hidden_states [..., hidden])
    returns what the replaced block returned (its tensor, or (tensor, None) for blocks that also
    return router scores). Inputs above the router's max_tokens go in several calls."""

    def __init__(self, steps: _Steps, layer: int, hidden_size: int, max_tokens: int, returns_pair: bool) -> None:
        super().__init__()
        self.steps, self.layer, self.hidden_size = steps, layer, hidden_size
        self.max_tokens, self.returns_pair = max(1, max_tokens), returns_pair

    def forward(self, hidden_states: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, None]]:
        shape = hidden_states.shape
        flat = hidden_states.detach().reshape(-1, shape[-1])
        parts = [self.steps.forward(self.layer, flat[i:i + self.max_tokens])
                 for i in range(0, flat.shape[0], self.max_tokens)]
        out = (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(shape)
        return (out, None) if self.returns_pair else out

    def extra_repr(self) -> str:
        return f"layer={self.layer}, router={self.steps.client.address}, stream={self.steps.stream}"


@dataclass
class Offloaded:
    """What offload() changed: the replaced layers, and the originals to put back (if kept)."""

    layers: List[int] = field(default_factory=list)
    _swaps: List[Tuple[Any, str, Any]] = field(default_factory=list)

    def restore(self) -> None:
        """Puts the original blocks back (offload(..., keep_originals=True) only)."""
        for module, name, original in reversed(self._swaps):
            if original is None and name != "shared_mlp":
                raise RuntimeError("offload() dropped the original blocks (keep_originals=False)")
            setattr(module, name, original)
        self._swaps.clear()
        self.layers.clear()


def decoder_layers(model: Any) -> Any:
    """The model's decoder layers (model.model.layers and the usual variants)."""
    for path in ("model.layers", "model.language_model.layers", "language_model.model.layers", "transformer.blocks",
                 "layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


def _block_of(layer: Any) -> Tuple[str, Any]:
    for name in _BLOCK_NAMES:
        block = getattr(layer, name, None)
        if block is not None:
            return name, block
    raise ValueError(f"{type(layer).__name__} has no MLP block named any of {', '.join(_BLOCK_NAMES)}")


def offload(model: Any, client: Union[Client, str], *, dense: bool = False, keep_originals: bool = False,
            stream: bool = True, timeout: Optional[float] = None) -> Offloaded:
    """Replaces `model`'s MoE blocks (and with dense=True the dense MLPs the router serves) by
    calls to the router behind `client` (a Client or an address). keep_originals keeps the
    replaced modules for Offloaded.restore(); otherwise they are dropped, freeing their weights.
    stream: send the steps on a ForwardStream per thread (else unary Forwards)."""
    if isinstance(client, str):
        client = Client(client)
    info = client.model_info(timeout=timeout)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = decoder_layers(model)
    problems = []
    if config.model_type != info.model_type:
        problems.append(f"model_type {config.model_type!r} vs the router's {info.model_type!r}")
    if config.hidden_size != info.hidden_size:
        problems.append(f"hidden_size {config.hidden_size} vs the router's {info.hidden_size}")
    if len(layers) != info.num_layers:
        problems.append(f"{len(layers)} decoder layers vs the router's {info.num_layers}")
    if not problems:
        for i, layer in enumerate(layers):
            moe_here = hasattr(_block_of(layer)[1], "experts")
            if moe_here != info.layers[i].moe:
                problems.append(f"layer {i} is {'MoE' if moe_here else 'dense'} here but "
                                f"{'MoE' if info.layers[i].moe else 'dense'} on the router")
    if problems:
        raise ValueError(f"the model does not match the router at {client.address}: " + "; ".join(problems))
    done = Offloaded()
    max_tokens = info.max_tokens or 8192
    steps = _Steps(client, stream)
    for i, layer in enumerate(layers):
        name, block = _block_of(layer)
        spec = info.layers[i]
        if not spec.moe and not (dense and spec.always_on_intermediate_size > 0):
            continue
        shared = getattr(layer, "shared_mlp", None)
        if shared is not None and spec.moe:  # Granite: the router's answer already includes it
            if spec.always_on_intermediate_size == 0:
                raise ValueError(f"layer {i} has a shared_mlp but the router's layer {i} serves none")
            done._swaps.append((layer, "shared_mlp", shared))
            layer.shared_mlp = _Zero()  # GraniteMoeHybrid calls it unconditionally; adding 0 is exact
        remote = RemoteBlock(steps, i, info.hidden_size, max_tokens, type(block).__name__ in _RETURNS_PAIR)
        done._swaps.append((layer, name, block if keep_originals else None))
        setattr(layer, name, remote)
        done.layers.append(i)
    return done
