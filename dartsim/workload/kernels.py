"""Kernels and the tensors they move."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dartsim.specs.dtypes import DType, tensor_bytes


class TensorKind(str, Enum):
    """What a tensor is, which decides where it lives and how it is reused."""

    WEIGHT = "weight"
    ACTIVATION = "activation"
    KV_CACHE = "kv_cache"


class Component(str, Enum):
    """Which part of the model a kernel belongs to; Table 7 compares ATTENTION and MLP."""

    ATTENTION = "attention"
    MLP = "mlp"
    NORM_RESIDUAL = "norm_residual"
    EMBEDDING = "embedding"
    LM_HEAD = "lm_head"


class Unit(str, Enum):
    """The compute unit a kernel's arithmetic runs on."""

    TENSOR = "tensor"
    VECTOR = "vector"


@dataclass(frozen=True)
class TensorAccess:
    """One tensor a kernel reads or writes: `numel` elements stored as `dtype`."""

    name: str
    kind: TensorKind
    numel: int
    dtype: DType

    @property
    def bytes(self) -> int:
        return tensor_bytes(self.numel, self.dtype)


@dataclass(frozen=True)
class Kernel:
    """One kernel of a step with its exact arithmetic and memory traffic.

    `flops_matmul` is multiply-add work on the tensor unit (a multiply-add is 2 FLOP) at
    `compute_dtype`; `flops_vector` is elementwise and reduction work (norms, SiLU, softmax,
    RoPE, residual adds) on the vector unit. Bytes are DRAM/HBM traffic assuming each
    tensor is read or written once per kernel.
    """

    name: str
    layer: int | None
    component: Component
    unit: Unit
    flops_matmul: int
    flops_vector: int
    compute_dtype: DType | None
    reads: tuple[TensorAccess, ...]
    writes: tuple[TensorAccess, ...]

    @property
    def flops(self) -> int:
        return self.flops_matmul + self.flops_vector

    @property
    def bytes_read(self) -> int:
        return sum(t.bytes for t in self.reads)

    @property
    def bytes_written(self) -> int:
        return sum(t.bytes for t in self.writes)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def bytes_of_kind(self, kind: TensorKind) -> int:
        """Traffic to tensors of one kind (weights, activations or KV cache)."""
        return sum(t.bytes for t in (*self.reads, *self.writes) if t.kind is kind)
