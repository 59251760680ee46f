"""Reference data for tests/model/gguf_reference_test.cc from the `gguf` package (llama.cpp's own
Python reader, gguf-py on PyPI), which nobody here wrote.

For every GGUF block type that model/formats reads, writes random blocks (every byte random, the
f16 scales random finite values across the whole f16 range, subnormals included) and the values
`gguf.quants.dequantize` gives for them; for the types whose quantizer gguf-py implements bit for
bit as ggml's reference (Q8_0, Q4_0), random f32 rows and the blocks `gguf.quants.quantize` makes.
Files in --out: <format>.blocks, <format>.f32 (little-endian), and <format>.input.f32 /
<format>.quantized. Run by ctest (the fixture of gguf_reference_test) in build/venv.
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

# Our format name -> (GGUF type, byte offsets of the block's f16 scales).
TYPES = {
    "q8_0": (T.Q8_0, [0]),
    "q4_0": (T.Q4_0, [0]),
    "q4_k": (T.Q4_K, [0, 2]),
    "q5_k": (T.Q5_K, [0, 2]),
    "q6_k": (T.Q6_K, [208]),
    "iq4_xs": (T.IQ4_XS, [0]),
    "mxfp4_gguf": (T.MXFP4, []),
}
QUANTIZED = ["q8_0", "q4_0"]
BLOCKS = 2048


def random_f16(rng, count):
    """Finite f16 values of both signs from 2^-24 (subnormal) to 2^15."""
    v = rng.choice([-1.0, 1.0], count) * np.exp2(rng.uniform(-24, 15, count))
    return v.astype(np.float16)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20261207)
    for name, (qtype, f16_offsets) in TYPES.items():
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, (BLOCKS, type_size), dtype=np.uint8)
        for off in f16_offsets:
            blocks[:, off:off + 2] = random_f16(rng, BLOCKS).view(np.uint8).reshape(BLOCKS, 2)
        with np.errstate(over="ignore"):  # MXFP4's largest exponents times 6 pass f32's range: inf
            values = dequantize(blocks, qtype).astype("<f4").reshape(-1)
        assert values.size == BLOCKS * block_size and not np.isnan(values).any(), name
        blocks.tofile(os.path.join(args.out, name + ".blocks"))
        values.tofile(os.path.join(args.out, name + ".f32"))
    for name in QUANTIZED:
        qtype = TYPES[name][0]
        rows = rng.standard_normal((64, 256)).astype(np.float32) * np.float32(0.02)
        rows[0, :] = 0.0                        # an all-zero block
        rows[1, :32] = np.linspace(-1, 1, 32)   # exact ties at the half steps
        rows.astype("<f4").tofile(os.path.join(args.out, name + ".input.f32"))
        quantize(rows, qtype).tofile(os.path.join(args.out, name + ".quantized"))
    print(f"wrote the gguf package's references of {len(TYPES)} block types to {args.out}")


if __name__ == "__main__":
    main()
