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

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

import grpc
import torch

from moe_serve import checkpoint_reads
from moe_serve.client import Client
from moe_serve.errors import MoeServeError

_BLOCK_NAMES = ("mlp", "block_sparse_moe", "feed_forward", "ffn")  # ffn: DBRX
# Blocks whose forward returns (hidden_states, router scores); their decoder layers unpack two values.
_RETURNS_PAIR = ("Llama4TextMoe", "GptOssMLP")


class _Zero(torch.nn.Module):
    """Stands in for a decoder-level MLP whose output the router's answer already holds."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden_states)


class StepStats:
    """Round trips to the router: how many, how many tokens they carried, and the seconds spent
    waiting for them (serialisation, network and the router's own compute). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls, self.tokens, self.seconds = 0, 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        with self._lock:
            self.calls += 1
            self.tokens += tokens
            self.seconds += seconds

    def snapshot(self) -> Tuple[int, int, float]:
        with self._lock:
            return self.calls, self.tokens, self.seconds


class _Steps:
    """How the RemoteBlocks of one offload() reach the router: one MoeService.ForwardStream per
    thread (a decoding step's layers go one after another on it: measured 6-11 % less time per
    step than unary calls, docs/CLIENTS.md), or unary Forwards with stream=False or when the
    router has no ForwardStream (UNIMPLEMENTED). A failed step drops that thread's stream; the
    next step opens a new one. Each step is bounded by the router's --deadline_ms, and by the
    client's timeout (a router that stops answering fails the step with DEADLINE_EXCEEDED)."""

    def __init__(self, client: Client, stream: bool) -> None:
        self.client, self.stream = client, stream
        self._local = threading.local()
        self.stats = StepStats()

    def forward(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self._forward(layer, x)
        finally:
            self.stats.add(x.shape[0], time.perf_counter() - start)

    def _forward(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if not self.stream:
            return self.client.forward(layer, x)
        s = getattr(self._local, "stream", None)
        if s is None:
            s = self._local.stream = self.client.stream(step_timeout=self.client.timeout)
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
    """What offload() or from_pretrained() changed: the replaced layers (and the name of each
    one's block), the originals to put back (if kept), and `steps`, whose `stats` count the round
    trips to the router."""

    layers: List[int] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    steps: Optional["_Steps"] = None
    _swaps: List[Tuple[Any, str, Any]] = field(default_factory=list)

    def restore(self) -> None:
        """Puts the original blocks back (offload(..., keep_originals=True) only)."""
        for module, name, original in reversed(self._swaps):
            if original is None and name != "shared_mlp":
                raise RuntimeError("offload() dropped the original blocks (keep_originals=False)")
            setattr(module, name, original)
        self._swaps.clear()
        self.layers.clear()
        self.names.clear()


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


def _check_matches(model: Any, info: Any, address: str) -> List[Any]:
    """The model's decoder layers, after checking the model against the router's GetModelInfo;
    ValueError names every difference."""
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
        raise ValueError(f"the model does not match the router at {address}: " + "; ".join(problems))
    return list(layers)


def _swap_blocks(model: Any, info: Any, steps: _Steps, dense: bool, keep_originals: bool) -> Offloaded:
    """Replaces the blocks the router serves by RemoteBlocks (offload() and from_pretrained())."""
    layers = _check_matches(model, info, steps.client.address)
    done = Offloaded(steps=steps)
    max_tokens = info.max_tokens or 8192
    for i, layer in enumerate(layers):
        name, block = _block_of(layer)
        spec = info.layers[i]
        if not spec.moe and not (dense and spec.always_on_intermediate_size > 0):
            continue
        shared = getattr(layer, "shared_mlp", None)
        if shared is not None and spec.moe:  # Granite: the router's answer already includes it
            if spec.always_on_intermediate_size == 0:
                raise ValueError(f"layer {i} has a shared_mlp but the router's layer {i} serves none")
            done._swaps.append((layer, "shared_mlp", shared if keep_originals else None))
            layer.shared_mlp = _Zero()  # GraniteMoeHybrid calls it unconditionally; adding 0 is exact
        remote = RemoteBlock(steps, i, info.hidden_size, max_tokens, type(block).__name__ in _RETURNS_PAIR)
        done._swaps.append((layer, name, block if keep_originals else None))
        setattr(layer, name, remote)
        done.layers.append(i)
        done.names.append(name)
    return done


def offload(model: Any, client: Union[Client, str], *, dense: bool = False, keep_originals: bool = False,
            stream: bool = True, timeout: Optional[float] = None) -> Offloaded:
    """Replaces `model`'s MoE blocks (and with dense=True the dense MLPs the router serves) by
    calls to the router behind `client` (a Client or an address). keep_originals keeps the
    replaced modules for Offloaded.restore(); otherwise they are dropped, freeing their weights.
    stream: send the steps on a ForwardStream per thread (else unary Forwards)."""
    if isinstance(client, str):
        client = Client(client)
    info = client.model_info(timeout=timeout)
    return _swap_blocks(model, info, _Steps(client, stream), dense, keep_originals)


def _causal_lm_class(config: Any) -> Any:
    """The transformers class AutoModelForCausalLM builds for `config` (else the image-text-to-text
    one, for multimodal wrappers whose text decoder the router serves)."""
    import transformers

    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModelForImageTextToText):
        mapping = auto._model_mapping
        if type(config) in mapping:
            return mapping[type(config)]
    raise ValueError(f"transformers has no causal LM class for model_type {config.model_type!r}; "
                     "pass model_class=")


def from_pretrained(path: str, client: Union[Client, str], *, dense: bool = False, stream: bool = True,
                    timeout: Optional[float] = None, model_class: Any = None, **kwargs: Any) -> Any:
    """Builds the transformers model of the checkpoint at `path` (a folder or a hub id) with the
    blocks the router serves never materialised, and loads every other tensor as transformers'
    own from_pretrained does (dtype=, device_map=, quantization and key conversions included);
    the served blocks' tensors are never read. The model is checked against the router's
    GetModelInfo as offload() checks it. Returns the model; `model.moe_serve` is the Offloaded
    record (its layers and the time spent in round trips to the router, `steps.stats`).

    How: the model class is subclassed so that, right after its __init__ (which transformers runs
    on the meta device), the served blocks are replaced by RemoteBlocks; transformers then finds no
    parameter for the blocks' checkpoint keys and skips them without reading them. A local folder's
    safetensors shards are handed to transformers as lazy tensors read with pread() straight into
    their own memory (moe_serve.checkpoint_reads), so the client's resident memory holds the loaded
    weights once, not also the file pages they came from; hub ids load through transformers' own
    file handling (mmap). GGUF files (gguf_file=) are refused: transformers' GGUF reader maps the
    experts of the model it fills, so it cannot fill one without them. A checkpoint
    key the model still wants but does not find is an error here (transformers only warns, and
    would leave those weights random). dense=True also serves the dense MLPs the router serves.
    model_class: the transformers class to build (default: what AutoModelForCausalLM builds, else
    AutoModelForImageTextToText). Other keyword arguments go to transformers' from_pretrained."""
    import transformers

    if "gguf_file" in kwargs:
        raise ValueError("from_pretrained does not read GGUF files: transformers' GGUF loader maps the experts of "
                         "the model it builds, which this one never has. Load with transformers' from_pretrained("
                         "..., gguf_file=...) and moe_serve.hf.offload(model, client) instead")
    if isinstance(client, str):
        client = Client(client)
    info = client.model_info(timeout=timeout)
    hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "trust_remote_code", "local_files_only",
                                        "subfolder")
                  if k in kwargs}
    config = kwargs.pop("config", None) or transformers.AutoConfig.from_pretrained(path, **hub_kwargs)
    cls = model_class or _causal_lm_class(config)
    steps = _Steps(client, stream)
    swapped: List[Offloaded] = []

    def init(self: Any, *args: Any, **kw: Any) -> None:
        cls.__init__(self, *args, **kw)
        swapped.append(_swap_blocks(self, info, steps, dense, keep_originals=False))
        # The served blocks' checkpoint keys are expected to be left unread, not reported.
        done, layers = swapped[-1], decoder_layers(self)
        served = [rf"(?:layers|blocks)\.{i}\.{n}\." for i, n in zip(done.layers, done.names)]
        served += [rf"(?:layers|blocks)\.{i}\.shared_mlp\." for i in done.layers
                   if isinstance(getattr(layers[i], "shared_mlp", None), _Zero)]
        if served:
            self._keys_to_ignore_on_load_unexpected = set(self._keys_to_ignore_on_load_unexpected or ()) | {
                "|".join(served)}

    served_cls = type(cls.__name__, (cls,), {"__init__": init, "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__})
    local = os.path.isdir(path) and "state_dict" not in kwargs
    files = checkpoint_reads.shard_paths(path) if local else []
    if files:
        with checkpoint_reads.Shards(files) as shards:
            model, loading = served_cls.from_pretrained(None, config=config, state_dict=shards.tensors,
                                                        output_loading_info=True, **kwargs)
        if os.path.exists(os.path.join(path, "generation_config.json")):
            model.generation_config = transformers.GenerationConfig.from_pretrained(path)
    else:
        model, loading = served_cls.from_pretrained(path, config=config, output_loading_info=True, **kwargs)
    model.__class__ = cls  # nothing of the subclass is needed once built
    missing = sorted(loading.get("missing_keys", ()))
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks {len(missing)} tensors the model needs outside the served "
                         f"blocks (transformers would leave them random): {', '.join(missing[:8])}")
    if not swapped:
        raise RuntimeError(f"{cls.__name__}.from_pretrained did not build the model through its class")
    model.moe_serve = swapped[-1]
    model.eval()
    return model
