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
    DART = "dart"
    """Mask-building work at a re-trigger (scores, top-k, mask upload, weight compaction)."""


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
    row_elements: int | None = None
    """Set when the tensor is gathered row by row (masked weights read by index): the
    elements of one contiguous row. The engine derives the DRAM efficiency from it."""
    picked: tuple[int, int] | None = None
    """Set for a strided gather: (k, n), k elements picked at random positions of every
    n consecutive ones (the kept neurons' weights in a [d, m] W_down). Neighbouring picks
    share DRAM bursts; the engine derives the efficiency from how many bursts are touched."""

    @property
    def bytes(self) -> int:
        return tensor_bytes(self.numel, self.dtype)

    @property
    def row_bytes(self) -> int | None:
        return None if self.row_elements is None else tensor_bytes(self.row_elements, self.dtype)


@dataclass(frozen=True)
class MatmulShape:
    """The problem shape of a kernel's matmul work, for the engine's efficiency model
    (the FLOPs themselves are counted exactly in `Kernel.flops_matmul`).

    A GEMM is C[m, n] = A[m, k] @ B[k, n], `count` independent problems in one kernel.
    For fused attention (`attention`), one problem per sequence and KV head, tiled as
    FlashAttention tiles it: outputs of m query rows (new tokens x query heads per KV head)
    by n = head_dim, each tile looping over k = the keys (the longest context).
    """

    m: int
    n: int
    k: int
    count: int = 1
    attention: bool = False
    decode: bool = False
    """Attention of one new token per sequence: the kernel streams the KV cache (the
    engine's decode-attention rule), rather than running a compute-bound tile loop."""


@dataclass(frozen=True)
class Collective:
    """A tensor-parallel collective: `op` over `tp` devices with `algorithm`, on a
    `payload_bytes` tensor (the full reduced tensor, or the full gathered one)."""

    op: str
    algorithm: str
    tp: int
    payload_bytes: int
    hops: int
    """Link latencies on the critical path (see ALLREDUCE_HOPS_RULE)."""


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
    link_bytes: int = 0
    """Bytes each device sends over the chip-to-chip link (tensor-parallel all-reduce)."""
    host_bytes: int = 0
    """Bytes uploaded from the host (a new mask at a re-trigger)."""
    shape: MatmulShape | None = None
    """The matmul problem shape, when the kernel has matmul work."""
    collective: Collective | None = None
    """Set for tensor-parallel collectives; `link_bytes` is what the algorithm sends."""
    sparse_2to4: bool = False
    """The weight is 2:4 sparse: the tensor unit may run at its 2:4 sparse peak."""

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
