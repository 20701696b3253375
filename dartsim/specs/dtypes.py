"""Numeric formats that weights, activations and the KV cache can be stored in.

Sizes are kept in bits so that sub-byte formats (int4) stay exact: the byte size of a
tensor is computed once, from its element count, in `tensor_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dartsim.errors import unknown_name
from dartsim.units import BITS_PER_BYTE


@dataclass(frozen=True)
class DType:
    """A storage format: its name and its size in bits per element."""

    name: str
    bits: int


FP32 = DType("fp32", 32)
BF16 = DType("bf16", 16)
FP16 = DType("fp16", 16)
FP8 = DType("fp8", 8)
INT8 = DType("int8", 8)
INT4 = DType("int4", 4)

DTYPES: dict[str, DType] = {d.name: d for d in (FP32, BF16, FP16, FP8, INT8, INT4)}


def get_dtype(name: str) -> DType:
    """Look a format up by name; a miss lists the valid names."""
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise unknown_name("dtype", name, list(DTYPES)) from None


def tensor_bytes(numel: int, dtype: DType) -> int:
    """Bytes that `numel` elements occupy in `dtype`, rounded up to whole bytes.

    Quantisation scales and zero points of int4/int8/fp8 formats are not included; the
    kernel-model document says so.
    """
    total_bits = numel * dtype.bits
    return -(-total_bits // BITS_PER_BYTE)
