"""Lazy, exact reads of the tensors of local safetensors shards, for moe_serve.hf.from_pretrained.

open_shards(folder) returns {name: LazyTensor} for every tensor of the folder's shards without
reading any tensor data (only the shards' headers). transformers' loader asks a LazyTensor for
get_shape() / get_dtype() and materialises it with `lazy[...]`; that read goes with pread() straight
into the memory of the returned tensor, so:
- a tensor the loader does not want (an expert the router serves) is never read;
- nothing stays resident but the tensors themselves: no file pages mapped into the client (as a
  mmap would leave them) and no second copy while reading (safetensors' own pread backend reads
  into a buffer and copies it: measured 2x the tensor's bytes at the peak).
The header format is safetensors' (an 8-byte little-endian length, a JSON header of name ->
dtype/shape/data_offsets, the data). Called from one thread at a time per tensor; different
tensors may be read from different threads (pread has no file position).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List

import torch

_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64, "F16": torch.float16,
    "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
if hasattr(torch, "float8_e8m0fnu"):
    _DTYPES["F8_E8M0"] = torch.float8_e8m0fnu
_CHUNK = 1 << 30  # bytes per pread() call (Linux caps one read a little under 2 GiB)


class LazyTensor:
    """One tensor of a shard, read when indexed (safetensors' slice interface: get_shape,
    get_dtype, [...]). A slice other than [...] reads the whole tensor and indexes it."""

    def __init__(self, shard: "_Shard", name: str, dtype: str, shape: List[int], begin: int, end: int) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"{shard.path}: tensor {name} has dtype {dtype}, which torch cannot hold")
        self._shard, self.name, self._dtype, self._shape = shard, name, dtype, list(shape)
        self._begin, self._end = begin, end
        want = _DTYPES[dtype].itemsize
        for d in shape:
            want *= d
        if end - begin != want:
            raise ValueError(f"{shard.path}: tensor {name} holds {end - begin} bytes, its {dtype} {shape} needs {want}")

    def get_shape(self) -> List[int]:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self._dtype

    def __getitem__(self, index: Any) -> torch.Tensor:
        out = torch.empty(self._shape, dtype=_DTYPES[self._dtype])
        if out.numel() > 0:
            self._shard.read_into(out.view(-1).view(torch.uint8).numpy(), self._shard.data_start + self._begin)
        return out if index is Ellipsis else out[index]


class _Shard:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(self.fd).st_size
            raw = os.pread(self.fd, 8, 0)
            if len(raw) != 8:
                raise ValueError(f"{path}: not a safetensors file (shorter than its header length)")
            (length,) = struct.unpack("<Q", raw)
            if length > size - 8:
                raise ValueError(f"{path}: header of {length} bytes is longer than the file")
            self.header = json.loads(os.pread(self.fd, length, 8))
            self.data_start = 8 + length
            self.data_size = size - self.data_start
        except BaseException:
            os.close(self.fd)
            raise

    def tensors(self) -> Dict[str, LazyTensor]:
        out = {}
        for name, spec in self.header.items():
            if name == "__metadata__":
                continue
            begin, end = spec["data_offsets"]
            if not 0 <= begin <= end <= self.data_size:
                raise ValueError(f"{self.path}: tensor {name} lies outside the file's data")
            out[name] = LazyTensor(self, name, spec["dtype"], spec["shape"], begin, end)
        return out

    def read_into(self, buffer: Any, offset: int) -> None:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view):
            n = os.preadv(self.fd, [view[done:done + _CHUNK]], offset + done)
            if n <= 0:
                raise OSError(f"{self.path}: short read at byte {offset + done}")
            done += n

    def close(self) -> None:
        os.close(self.fd)


class Shards:
    """The open shards of a checkpoint: `tensors` maps every name to its LazyTensor. close() (or
    leaving a with block) closes the files; LazyTensors cannot be read after that."""

    def __init__(self, paths: List[str]) -> None:
        self._shards: List[_Shard] = []
        self.tensors: Dict[str, LazyTensor] = {}
        try:
            for p in paths:
                shard = _Shard(p)
                self._shards.append(shard)
                self.tensors.update(shard.tensors())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self._shards:
            s.close()
        self._shards.clear()

    def __enter__(self) -> "Shards":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shard_paths(folder: str) -> List[str]:
    """The safetensors shards of a local checkpoint folder (from its index, else model.safetensors;
    empty when it has neither)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(folder, n) for n in names]
    single = os.path.join(folder, "model.safetensors")
    return [single] if os.path.isfile(single) else []

