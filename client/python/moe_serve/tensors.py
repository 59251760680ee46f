"""Hidden states to and from the wire (moe.v1.Tensor) without a float round trip: numpy float32 /
float16 (and bfloat16 from ml_dtypes, if installed) and torch float32 / bfloat16 / float16 travel
as their own bytes; the answer comes back as the same kind of array, dtype and device. Internal
to moe_serve; pure functions."""
from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

from moe_serve._proto import moe_pb2

_NUMPY_WIRE = {np.dtype(np.float32): moe_pb2.DTYPE_F32, np.dtype(np.float16): moe_pb2.DTYPE_F16}


def _torch():
    try:
        import torch
    except ImportError:  # numpy-only installs
        return None
    return torch


Decoder = Callable[[moe_pb2.Tensor], Any]


def encode(hidden_states: Any, hidden_size: int | None = None) -> Tuple[moe_pb2.Tensor, Decoder]:
    """(the [tokens, hidden] wire tensor, a function turning the answer back into the caller's kind
    and leading shape). Accepts [..., hidden]; leading dimensions are flattened into tokens."""
    torch = _torch()
    if torch is not None and isinstance(hidden_states, torch.Tensor):
        return _encode_torch(torch, hidden_states, hidden_size)
    if isinstance(hidden_states, np.ndarray):
        return _encode_numpy(hidden_states, hidden_size)
    raise TypeError(f"hidden_states must be a numpy array or a torch tensor, not {type(hidden_states).__name__}")


def _check_shape(shape: Tuple[int, ...], hidden_size: int | None) -> Tuple[int, int]:
    if len(shape) < 1:
        raise ValueError("hidden_states must have at least one dimension ([..., hidden])")
    hidden = shape[-1]
    if hidden_size is not None and hidden != hidden_size:
        raise ValueError(f"hidden_states has hidden size {hidden}; the router's model has {hidden_size}")
    tokens = 1
    for d in shape[:-1]:
        tokens *= d
    return tokens, hidden


def _encode_numpy(x: np.ndarray, hidden_size: int | None) -> Tuple[moe_pb2.Tensor, Decoder]:
    if x.dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        wire = moe_pb2.DTYPE_BF16
    elif x.dtype in _NUMPY_WIRE:
        wire = _NUMPY_WIRE[x.dtype]
    else:
        raise TypeError(f"hidden_states dtype {x.dtype} is not served; use float32, float16 or bfloat16")
    tokens, hidden = _check_shape(x.shape, hidden_size)
    lead = x.shape[:-1]
    data = np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"), copy=False)).tobytes()
    dtype = x.dtype

    def decode(t: moe_pb2.Tensor) -> np.ndarray:
        _check_answer(t, wire, tokens, hidden)
        return np.frombuffer(t.data, dtype=dtype).reshape(*lead, hidden).copy()

    return moe_pb2.Tensor(dtype=wire, shape=[tokens, hidden], data=data), decode


def _encode_torch(torch: Any, x: Any, hidden_size: int | None) -> Tuple[moe_pb2.Tensor, Decoder]:
    wires = {torch.float32: moe_pb2.DTYPE_F32, torch.bfloat16: moe_pb2.DTYPE_BF16, torch.float16: moe_pb2.DTYPE_F16}
    if x.dtype not in wires:
        raise TypeError(f"hidden_states dtype {x.dtype} is not served; use float32, bfloat16 or float16")
    wire = wires[x.dtype]
    tokens, hidden = _check_shape(tuple(x.shape), hidden_size)
    lead = tuple(x.shape[:-1])
    device, dtype = x.device, x.dtype
    cpu = x.detach().to("cpu").contiguous()
    # bfloat16 has no numpy dtype: its bytes go as int16, unchanged.
    data = (cpu.view(torch.int16) if dtype == torch.bfloat16 else cpu).numpy().tobytes()

    def decode(t: moe_pb2.Tensor) -> Any:
        _check_answer(t, wire, tokens, hidden)
        out = torch.frombuffer(bytearray(t.data), dtype=dtype).reshape(*lead, hidden)
        return out.to(device)

    return moe_pb2.Tensor(dtype=wire, shape=[tokens, hidden], data=data), decode


def _check_answer(t: moe_pb2.Tensor, wire: int, tokens: int, hidden: int) -> None:
    size = {moe_pb2.DTYPE_F32: 4, moe_pb2.DTYPE_BF16: 2, moe_pb2.DTYPE_F16: 2}[wire]
    if t.dtype != wire or list(t.shape) != [tokens, hidden] or len(t.data) != tokens * hidden * size:
        raise ValueError(f"the router answered a {moe_pb2.DType.Name(t.dtype)} tensor of shape {list(t.shape)} "
                         f"({len(t.data)} bytes); expected {moe_pb2.DType.Name(wire)} [{tokens}, {hidden}]")
