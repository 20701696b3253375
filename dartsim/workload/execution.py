"""How a step runs and what it is: storage precisions, kernel fusion, tensor parallelism
and mask application (Execution), and the step's shape (phase, batch, tokens, contexts).

These are the inputs of the workload model; nothing here counts a FLOP or a byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dartsim.errors import UserError
from dartsim.names import ALLREDUCE_ALGORITHMS, MASK_APPLY_MODES, PHASES
from dartsim.specs.dtypes import FP8, FP16, INT8, DType
from dartsim.specs.model import ModelSpec
from dartsim.workload.sparse_storage import WeightStorage


@dataclass(frozen=True)
class Precision:
    """Storage formats of weights, activations (moved between kernels) and the KV cache.

    The default is Table 7's: FP8 weights and KV cache, FP16 activations. Norm weights,
    biases, the embedding table and the lm_head stay at the activation precision, as FP8
    checkpoints keep them.
    """

    weight: DType = FP8
    activation: DType = FP16
    kv_cache: DType = FP8

    @property
    def gemm_compute(self) -> DType:
        """Tensor-unit format of weight GEMMs: FP8/INT8 weights run W8A8, others at the
        activation format (int4 weights are dequantised to it)."""
        return self.weight if self.weight in (FP8, INT8) else self.activation

    def attention_compute(self, low_precision: bool = True) -> DType:
        """Tensor-unit format of QK^T and AV: the KV cache's FP8/INT8 where the attention
        kernels compute in it (`low_precision`), else the activation format (kernels
        that dequantise the cache as they load it)."""
        if low_precision and self.kv_cache in (FP8, INT8):
            return self.kv_cache
        return self.activation


@dataclass(frozen=True)
class KernelFusion:
    """Which neighbouring operations run as one kernel (and so skip a DRAM round trip),
    and how W_down is laid out. A software stack decides these (specs/stack.py, fusion).

    Defaults are the kernel model of docs/kernel-model.md (Table 7's): q, k and v
    projections as three GEMMs (the modules of the Hugging Face implementation), gate, up
    and SwiGLU fused, residual adds and norms apart, FP8 inputs quantised inside the
    kernel that produces them, W_down neuron-major.
    """

    qkv_fused: bool = False
    swiglu_fused: bool = True
    gate_up_merged: bool = False
    """With SwiGLU apart (`swiglu_fused` False): gate and up as one GEMM of [d, 2k] weights
    before the activation kernel, instead of two GEMMs."""
    norm_residual: bool = False
    """Each residual add runs inside the next RMSNorm (one kernel reads h and f and
    writes both the sum and its normalised form)."""
    activation_quant: bool = True
    """False: a separate kernel quantises the input of every FP8/INT8 GEMM."""
    down_input_major: bool = False
    """W_down in nn.Linear's [d, m] layout: a neuron's d weights are strided m apart, so
    reading the kept neurons by index touches scattered elements, not whole rows."""


@dataclass(frozen=True)
class Execution:
    """How the step runs: tensor-parallel degree and collective algorithm, how masks are
    applied, and whether the FFN's activations are being observed for DART (dense
    collection windows)."""

    tp: int = 1
    mask_apply: str = "compact"
    dart_observe: bool = False
    allreduce: str = "ring"
    one_shot_max_bytes: int = 0
    """Largest message `auto` sends one-shot (a property of the collective library)."""
    weights: WeightStorage = field(default_factory=WeightStorage)
    """How the decoder blocks' linear weights are stored (pruned policies: wanda, 2:4)."""
    predictor_rank: int = 0
    """Rank of a per-token FFN neuron predictor run before every FFN (dejavu); 0: none."""
    fusion: KernelFusion = field(default_factory=KernelFusion)
    attention_low_precision: bool = True
    """With an FP8/INT8 KV cache the attention kernels compute in that format (False:
    they dequantise it and compute at the activation format)."""

    def __post_init__(self) -> None:
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp <= 0:
            raise UserError(f"tensor-parallel degree must be a positive integer, got {self.tp!r}")
        if self.mask_apply not in MASK_APPLY_MODES:
            raise UserError(
                f"mask apply must be one of {', '.join(MASK_APPLY_MODES)}, got {self.mask_apply!r}"
            )
        rank = self.predictor_rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise UserError(f"predictor rank must be a non-negative integer, got {self.predictor_rank!r}")
        if self.allreduce not in ALLREDUCE_ALGORITHMS:
            raise UserError(
                f"all-reduce algorithm must be one of {', '.join(ALLREDUCE_ALGORITHMS)}, "
                f"got {self.allreduce!r}"
            )


def check_tensor_parallel(spec: ModelSpec, tp: int) -> None:
    """Heads, KV heads, FFN width and vocabulary must split evenly over `tp` devices."""
    if spec.num_heads % tp:
        raise UserError(f"--tp {tp} does not divide the {spec.num_heads} attention heads of {spec.name}")
    if spec.num_kv_heads % tp and tp % spec.num_kv_heads:
        raise UserError(
            f"--tp {tp} neither divides nor is a multiple of the {spec.num_kv_heads} KV heads of {spec.name}"
        )
    if spec.intermediate_size % tp:
        raise UserError(f"--tp {tp} does not divide the FFN width {spec.intermediate_size} of {spec.name}")


def device_spec(spec: ModelSpec, tp: int) -> ModelSpec:
    """The shard one device holds under Megatron-style tensor parallelism: heads and FFN
    neurons split, KV heads split (or replicated when fewer than `tp`), vocabulary split."""
    check_tensor_parallel(spec, tp)
    if tp == 1:
        return spec
    return replace(
        spec,
        num_heads=spec.num_heads // tp,
        num_kv_heads=max(1, spec.num_kv_heads // tp),
        intermediate_size=spec.intermediate_size // tp,
        vocab_size=-(-spec.vocab_size // tp),
    )


def shard_kept(kept: int, tp: int) -> int:
    """Kept neurons on the busiest device when a layer's kept set is split over `tp`
    devices (balanced split assumed; rounds up)."""
    return -(-kept // tp)


@dataclass(frozen=True)
class StepShape:
    """One forward step: `batch` sequences each get `new_tokens`, ending at `context_len`.

    `context_len` counts every position of a sequence after the step (cached + new), so a
    decode step at context c attends to c keys and reads c - 1 of them from the cache.
    """

    phase: str
    batch: int
    new_tokens: int
    context_len: int
    contexts: tuple[int, ...] | None = None
    """Per-sequence lengths after the step, when the batch's sequences differ (replaying
    several traces together); `context_len` is then their maximum."""
    news: tuple[int, ...] | None = None
    """Per-sequence new tokens, when they differ (a batched prefill of prompts of
    different lengths); `new_tokens` is then their maximum."""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise UserError(f"step phase must be one of {PHASES}, got {self.phase!r}")
        for name in ("batch", "new_tokens", "context_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"step {name} must be a positive integer, got {value!r}")
        if self.new_tokens > self.context_len:
            raise UserError(f"step new_tokens={self.new_tokens} exceeds context_len={self.context_len}")
        if self.news is not None:
            contexts = self.sequence_contexts
            if len(self.news) != self.batch or len(contexts) != self.batch:
                raise UserError(f"step has {self.batch} sequences but {len(self.news)} new-token counts")
            if max(self.news) != self.new_tokens or any(
                not 0 < n <= c for n, c in zip(self.news, contexts, strict=True)
            ):
                raise UserError(f"step new tokens {self.news} do not fit contexts {contexts}")

    @classmethod
    def decode(cls, batch: int, context_len: int) -> StepShape:
        return cls("decode", batch, 1, context_len)

    @classmethod
    def prefill(cls, batch: int, prompt_len: int) -> StepShape:
        return cls("prefill", batch, prompt_len, prompt_len)

    @property
    def tokens(self) -> int:
        """T: tokens pushed through every layer in this step."""
        return sum(self.news) if self.news is not None else self.batch * self.new_tokens

    @property
    def sequence_news(self) -> tuple[int, ...]:
        """New tokens of every sequence in this step."""
        return self.news if self.news is not None else (self.new_tokens,) * self.batch

    @property
    def sequence_contexts(self) -> tuple[int, ...]:
        """Length of every sequence after the step."""
        return self.contexts if self.contexts is not None else (self.context_len,) * self.batch

    @property
    def cached_total(self) -> int:
        """Positions already in the KV cache before the step, summed over the batch."""
        return sum(c - n for c, n in zip(self.sequence_contexts, self.sequence_news, strict=True))

    @property
    def attention_pairs(self) -> int:
        """Query-key pairs under the causal mask, summed over the batch.

        New token j (0-based) sees the cached positions and new tokens 0..j.
        """
        pairs = zip(self.sequence_contexts, self.sequence_news, strict=True)
        return sum(n * (c - n) + n * (n + 1) // 2 for c, n in pairs)


def kept_count(keep_fraction: float, width: int) -> int:
    """Kept neurons for a kept fraction: round((1 - p) * m) with halves rounded up."""
    if not 0.0 <= keep_fraction <= 1.0 or math.isnan(keep_fraction):
        raise UserError(f"kept fraction must lie in [0, 1], got {keep_fraction!r}")
    return min(width, math.floor(keep_fraction * width + 0.5))
