"""Per-kernel FLOPs and bytes of a Llama-family decoder step.

The kernel accounting (which tensors each kernel reads and writes, at which precision) is
written down in docs/kernel-model.md; this module is its executable form. Shapes below use
T = batch * new_tokens (tokens in the step), d = hidden size, m = FFN width, k = kept FFN
neurons, qw = heads * head_dim, kvw = kv_heads * head_dim, V = vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dartsim.errors import UserError
from dartsim.specs.dtypes import FP8, FP16, INT8, DType, tensor_bytes
from dartsim.specs.model import ModelSpec
from dartsim.workload.kernels import Component, Kernel, TensorAccess, TensorKind, Unit

# Vector work, counted per arithmetic operation of each formula (exp and rsqrt count as one
# FLOP each). These only feed the vector unit's time; Table 7's "compute" is matmul work.
RMSNORM_FLOPS_PER_ELEMENT = 4
"""x^2, the running sum, the scale by rsqrt(mean), the multiply by the norm weight."""
SWIGLU_FLOPS_PER_ELEMENT = 5
"""SiLU(g) = g / (1 + exp(-g)): negate, exp, add, divide; then the multiply by up(x)."""
SOFTMAX_FLOPS_PER_SCORE = 5
"""Running max, subtract, exp, running sum, normalise (the 1/sqrt(head_dim) scale folded in)."""
ROPE_FLOPS_PER_ELEMENT = 3
"""x * cos + rotate_half(x) * sin: two multiplies and an add per rotated element."""
RESIDUAL_FLOPS_PER_ELEMENT = 1
BIAS_FLOPS_PER_ELEMENT = 1
MATMUL_FLOPS_PER_MAC = 2
"""A multiply-add counts as two FLOPs (the DART paper's Table 7 convention too)."""

PHASES = ("prefill", "decode")


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

    @property
    def attention_compute(self) -> DType:
        """Tensor-unit format of QK^T and AV: FP8 when the KV cache is FP8."""
        return self.kv_cache if self.kv_cache in (FP8, INT8) else self.activation


@dataclass(frozen=True)
class KernelFusion:
    """Which neighbouring operations run as one kernel (and so skip a DRAM round trip).

    Defaults are the kernel model of docs/kernel-model.md: q, k and v projections as three
    GEMMs (the modules of the Hugging Face implementation), gate, up and SwiGLU fused.
    """

    qkv_fused: bool = False
    swiglu_fused: bool = True


MASK_APPLY_MODES = ("compact", "gather")
"""compact: kept weights copied into contiguous buffers at each re-trigger; gather: kept
rows read by index at every step."""
INDEX_DTYPE_BITS = 32
"""Kept-neuron indices of the gather path are int32."""
TOPK_COMPARISONS_PER_ELEMENT_LOG2 = 1
"""Top-k by sorting: m log2(m) comparisons, one FLOP each, on the vector unit."""
SCORE_FLOPS_PER_ELEMENT = 2
"""s_i += u_i^2: a multiply and an add per neuron and token."""
SENSITIVITY_FLOPS_PER_ELEMENT = 8
"""Eq. 4 per token: y.z, |y|, |z|, |z - y| (two FLOPs each per element)."""
_INDEX = DType("int32", INDEX_DTYPE_BITS)


@dataclass(frozen=True)
class Execution:
    """How the step runs: tensor-parallel degree, how masks are applied, and whether the
    FFN's activations are being observed for DART (dense collection windows)."""

    tp: int = 1
    mask_apply: str = "compact"
    dart_observe: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp <= 0:
            raise UserError(f"tensor-parallel degree must be a positive integer, got {self.tp!r}")
        if self.mask_apply not in MASK_APPLY_MODES:
            raise UserError(
                f"mask apply must be one of {', '.join(MASK_APPLY_MODES)}, got {self.mask_apply!r}"
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
    from dataclasses import replace

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

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise UserError(f"step phase must be one of {PHASES}, got {self.phase!r}")
        for field in ("batch", "new_tokens", "context_len"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"step {field} must be a positive integer, got {value!r}")
        if self.new_tokens > self.context_len:
            raise UserError(f"step new_tokens={self.new_tokens} exceeds context_len={self.context_len}")

    @classmethod
    def decode(cls, batch: int, context_len: int) -> StepShape:
        return cls("decode", batch, 1, context_len)

    @classmethod
    def prefill(cls, batch: int, prompt_len: int) -> StepShape:
        return cls("prefill", batch, prompt_len, prompt_len)

    @property
    def tokens(self) -> int:
        """T: tokens pushed through every layer in this step."""
        return self.batch * self.new_tokens

    @property
    def sequence_contexts(self) -> tuple[int, ...]:
        """Length of every sequence after the step."""
        return self.contexts if self.contexts is not None else (self.context_len,) * self.batch

    @property
    def cached_total(self) -> int:
        """Positions already in the KV cache before the step, summed over the batch."""
        return sum(c - self.new_tokens for c in self.sequence_contexts)

    @property
    def attention_pairs(self) -> int:
        """Query-key pairs under the causal mask, summed over the batch.

        New token j (0-based) sees the cached positions and new tokens 0..j.
        """
        n = self.new_tokens
        return sum(n * (c - n) + n * (n + 1) // 2 for c in self.sequence_contexts)


def kept_count(keep_fraction: float, width: int) -> int:
    """Kept neurons for a kept fraction: round((1 - p) * m) with halves rounded up."""
    if not 0.0 <= keep_fraction <= 1.0 or math.isnan(keep_fraction):
        raise UserError(f"kept fraction must lie in [0, 1], got {keep_fraction!r}")
    return min(width, math.floor(keep_fraction * width + 0.5))


def _w(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.WEIGHT, numel, dtype)


def _a(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.ACTIVATION, numel, dtype)


def _kv(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.KV_CACHE, numel, dtype)


def _gemm(
    name: str,
    layer: int | None,
    component: Component,
    tokens: int,
    in_width: int,
    out_width: int,
    input_name: str,
    output_name: str,
    weight_name: str,
    prec: Precision,
    bias: bool = False,
    weight_dtype: DType | None = None,
    gather_rows: int | None = None,
) -> Kernel:
    """y[T, out] = x[T, in] @ W[in, out] (+ b[out]).

    With `gather_rows` = k, the weight is read as k rows of `in_width` elements picked by an
    int32 index list (the gather path of masked FFN weights).
    """
    w_dtype = prec.weight if weight_dtype is None else weight_dtype
    weight = _w(weight_name, in_width * out_width, w_dtype)
    reads = [_a(input_name, tokens * in_width, prec.activation), weight]  # x: [T, in], W: [in, out]
    if gather_rows is not None:
        row = in_width if gather_rows == out_width else out_width
        reads[1] = TensorAccess(weight_name, TensorKind.WEIGHT, weight.numel, w_dtype, row)
        reads.append(TensorAccess(f"{weight_name}.index", TensorKind.ACTIVATION, gather_rows, _INDEX))
    vector = 0
    if bias:
        reads.append(_w(f"{weight_name}.bias", out_width, prec.activation))  # b: [out]
        vector = BIAS_FLOPS_PER_ELEMENT * tokens * out_width
    compute = prec.gemm_compute if weight_dtype is None else prec.activation
    return Kernel(
        name=name,
        layer=layer,
        component=component,
        unit=Unit.TENSOR,
        flops_matmul=MATMUL_FLOPS_PER_MAC * tokens * in_width * out_width,
        flops_vector=vector,
        compute_dtype=compute,
        reads=tuple(reads),
        writes=(_a(output_name, tokens * out_width, prec.activation),),  # y: [T, out]
    )


def _rmsnorm(name: str, layer: int | None, tokens: int, width: int, prec: Precision) -> Kernel:
    """xn[T, d] = x / rms(x) * w."""
    return Kernel(
        name=name,
        layer=layer,
        component=Component.NORM_RESIDUAL,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=RMSNORM_FLOPS_PER_ELEMENT * tokens * width,
        compute_dtype=None,
        reads=(
            _a("h", tokens * width, prec.activation),
            _w(f"{name}.weight", width, prec.activation),
        ),
        writes=(_a("xn", tokens * width, prec.activation),),
    )


def _residual(name: str, layer: int, tokens: int, width: int, prec: Precision) -> Kernel:
    """h'[T, d] = h + f."""
    return Kernel(
        name=name,
        layer=layer,
        component=Component.NORM_RESIDUAL,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=RESIDUAL_FLOPS_PER_ELEMENT * tokens * width,
        compute_dtype=None,
        reads=(_a("h", tokens * width, prec.activation), _a("f", tokens * width, prec.activation)),
        writes=(_a("h_out", tokens * width, prec.activation),),
    )


def _attention_core(spec: ModelSpec, shape: StepShape, layer: int, prec: Precision) -> Kernel:
    """Fused attention with KV-cache append (FlashAttention `with_kvcache` style).

    Reads q and the new k, v, applies RoPE (and Qwen3's q/k norms) in registers, appends the
    new k, v to the cache, reads the cached positions, and writes the attention output.
    """
    T = shape.tokens
    qw, kvw, hd = spec.q_width, spec.kv_width, spec.head_dim
    cached = shape.cached_total  # cached positions over the batch
    appended = T  # one new cache row per new token
    pairs = shape.attention_pairs
    reads = [
        _a("q", T * qw, prec.activation),  # q: [T, H, hd]
        _a("k", T * kvw, prec.activation),  # k_new: [T, KV, hd]
        _a("v", T * kvw, prec.activation),  # v_new: [T, KV, hd]
        _kv("k_cache", cached * kvw, prec.kv_cache),  # K: [B, c0, KV, hd]
        _kv("v_cache", cached * kvw, prec.kv_cache),  # V: [B, c0, KV, hd]
    ]
    vector = SOFTMAX_FLOPS_PER_SCORE * spec.num_heads * pairs
    vector += ROPE_FLOPS_PER_ELEMENT * T * (qw + kvw)
    if spec.qk_norm:
        reads.append(_w("q_norm.weight", hd, prec.activation))
        reads.append(_w("k_norm.weight", hd, prec.activation))
        vector += RMSNORM_FLOPS_PER_ELEMENT * T * (qw + kvw)
    return Kernel(
        name="attention",
        layer=layer,
        component=Component.ATTENTION,
        unit=Unit.TENSOR,
        # S = Q K^T and O = P V: each H * pairs * hd multiply-adds.
        flops_matmul=2 * MATMUL_FLOPS_PER_MAC * spec.num_heads * pairs * hd,
        flops_vector=vector,
        compute_dtype=prec.attention_compute,
        reads=tuple(reads),
        writes=(
            _kv("k_cache_new", appended * kvw, prec.kv_cache),  # [B, n, KV, hd]
            _kv("v_cache_new", appended * kvw, prec.kv_cache),
            _a("o", T * qw, prec.activation),  # o: [T, H, hd]
        ),
    )


def _attention_kernels(
    spec: ModelSpec, shape: StepShape, layer: int, prec: Precision, fusion: KernelFusion
) -> list[Kernel]:
    T, d = shape.tokens, spec.hidden_size
    qw, kvw, bias = spec.q_width, spec.kv_width, spec.attention_bias
    attn = Component.ATTENTION
    if fusion.qkv_fused:
        projections = [_gemm("qkv_proj", layer, attn, T, d, qw + 2 * kvw, "xn", "qkv", "W_qkv", prec, bias)]
    else:
        projections = [
            _gemm("q_proj", layer, attn, T, d, qw, "xn", "q", "W_q", prec, bias),
            _gemm("k_proj", layer, attn, T, d, kvw, "xn", "k", "W_k", prec, bias),
            _gemm("v_proj", layer, attn, T, d, kvw, "xn", "v", "W_v", prec, bias),
        ]
    return [
        *projections,
        _attention_core(spec, shape, layer, prec),
        _gemm("o_proj", layer, attn, T, qw, d, "o", "attn_out", "W_o", prec),
    ]


def _mlp_kernels(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    kept: int,
    prec: Precision,
    fusion: KernelFusion,
    gather: bool,
) -> list[Kernel]:
    """SwiGLU FFN with `kept` of its m neurons: rows of W_gate/W_up and columns of W_down.

    With `gather`, the kept rows are read by index from the full matrices at every step;
    otherwise they are contiguous (compacted at the re-trigger, or the FFN is dense).
    """
    T, d, k = shape.tokens, spec.hidden_size, kept
    mlp, bias = Component.MLP, spec.mlp_bias
    rows = k if gather and k < spec.intermediate_size else None
    swiglu_vector = SWIGLU_FLOPS_PER_ELEMENT * T * k
    if fusion.swiglu_fused:
        row = None if rows is None else d
        reads = [
            _a("xn", T * d, prec.activation),  # x: [T, d]
            TensorAccess("W_gate", TensorKind.WEIGHT, d * k, prec.weight, row),  # [d, k]
            TensorAccess("W_up", TensorKind.WEIGHT, d * k, prec.weight, row),  # [d, k]
        ]
        if rows is not None:
            reads.append(TensorAccess("W_gate_up.index", TensorKind.ACTIVATION, k, _INDEX))
        vector = swiglu_vector
        if bias:
            reads += [_w("W_gate.bias", k, prec.activation), _w("W_up.bias", k, prec.activation)]
            vector += 2 * BIAS_FLOPS_PER_ELEMENT * T * k
        up_part = [
            Kernel(
                name="gate_up_swiglu",
                layer=layer,
                component=mlp,
                unit=Unit.TENSOR,
                flops_matmul=2 * MATMUL_FLOPS_PER_MAC * T * d * k,
                flops_vector=vector,
                compute_dtype=prec.gemm_compute,
                reads=tuple(reads),
                writes=(_a("u", T * k, prec.activation),),  # u: [T, k]
            )
        ]
    else:
        up_part = [
            _gemm("gate_proj", layer, mlp, T, d, k, "xn", "g", "W_gate", prec, bias, gather_rows=rows),
            _gemm("up_proj", layer, mlp, T, d, k, "xn", "up", "W_up", prec, bias, gather_rows=rows),
            Kernel(
                name="swiglu",
                layer=layer,
                component=mlp,
                unit=Unit.VECTOR,
                flops_matmul=0,
                flops_vector=swiglu_vector,
                compute_dtype=None,
                reads=(_a("g", T * k, prec.activation), _a("up", T * k, prec.activation)),
                writes=(_a("u", T * k, prec.activation),),
            ),
        ]
    down = _gemm("down_proj", layer, mlp, T, k, d, "u", "ffn_out", "W_down", prec, bias, gather_rows=rows)
    return [*up_part, down]


def _all_reduce(
    name: str, layer: int, component: Component, tokens: int, width: int, prec: Precision, tp: int
) -> Kernel:
    """Ring all-reduce of the [T, d] partial sums: each device sends 2 (tp - 1) / tp of the
    tensor over its link at the activation precision, reading and writing it in DRAM."""
    numel = tokens * width
    return Kernel(
        name=name,
        layer=layer,
        component=component,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=(tp - 1) * numel,  # the reduction adds
        compute_dtype=None,
        reads=(_a("partial", numel, prec.activation),),
        writes=(_a("reduced", numel, prec.activation),),
        link_bytes=2 * (tp - 1) * tensor_bytes(numel, prec.activation) // tp,
    )


def _dart_observe(spec: ModelSpec, shape: StepShape, layer: int) -> Kernel:
    """DART's bookkeeping in a dense collection step: neuron scores from u and the Eq. 4
    sensitivity, fused into the FFN kernels (vector work, no extra DRAM traffic)."""
    T = shape.tokens
    return Kernel(
        name="dart_observe",
        layer=layer,
        component=Component.DART,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=SCORE_FLOPS_PER_ELEMENT * T * spec.intermediate_size
        + SENSITIVITY_FLOPS_PER_ELEMENT * T * spec.hidden_size,
        compute_dtype=None,
        reads=(),
        writes=(),
    )


def layer_kernels(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    kept_neurons: int | None = None,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
) -> list[Kernel]:
    """The kernels of decoder block `layer` on one device, in execution order.

    `spec` is the whole model; under tensor parallelism (`execution.tp` > 1) the kernels
    are those of one device's shard, with an all-reduce after o_proj and after down_proj.
    `kept_neurons` counts the whole layer's kept neurons.
    """
    prec = precision or Precision()
    fuse = fusion or KernelFusion()
    run = execution or Execution()
    m = spec.intermediate_size
    k = m if kept_neurons is None else kept_neurons
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= m:
        raise UserError(f"layer {layer}: kept neurons must be an integer in [0, {m}], got {k!r}")
    tp = run.tp
    shard = device_spec(spec, tp)
    T, d = shape.tokens, spec.hidden_size
    attention = _attention_kernels(shard, shape, layer, prec, fuse)
    mlp = _mlp_kernels(shard, shape, layer, shard_kept(k, tp), prec, fuse, run.mask_apply == "gather")
    if tp > 1:
        attention.append(_all_reduce("attn_all_reduce", layer, Component.ATTENTION, T, d, prec, tp))
        mlp.append(_all_reduce("mlp_all_reduce", layer, Component.MLP, T, d, prec, tp))
    kernels = [
        _rmsnorm("input_layernorm", layer, T, d, prec),
        *attention,
        _residual("attn_residual", layer, T, d, prec),
        _rmsnorm("post_attention_layernorm", layer, T, d, prec),
        *mlp,
        _residual("mlp_residual", layer, T, d, prec),
    ]
    if run.dart_observe:
        kernels.append(_dart_observe(shard, shape, layer))
    return kernels


def _embedding(spec: ModelSpec, shape: StepShape, prec: Precision) -> Kernel:
    """Row gather: h[T, d] = E[ids]; reads only the T rows it needs."""
    T, d = shape.tokens, spec.hidden_size
    return Kernel(
        name="embed_tokens",
        layer=None,
        component=Component.EMBEDDING,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=0,
        compute_dtype=None,
        reads=(_w("E_rows", T * d, prec.activation),),
        writes=(_a("h", T * d, prec.activation),),
    )


def _lm_head(spec: ModelSpec, shape: StepShape, prec: Precision, tp: int) -> list[Kernel]:
    """Final norm over the step's tokens, then logits for each sequence's last token only
    (the vocabulary split over `tp` devices)."""
    T, B, d, V = shape.tokens, shape.batch, spec.hidden_size, device_spec(spec, tp).vocab_size
    norm = _rmsnorm("norm", None, T, d, prec)
    head = _gemm(
        "lm_head",
        None,
        Component.LM_HEAD,
        B,
        d,
        V,
        "xn_last",
        "logits",
        "W_lm_head",
        prec,
        weight_dtype=prec.activation,
    )
    return [norm, head]


def step_kernels(
    spec: ModelSpec,
    shape: StepShape,
    kept_neurons: Sequence[int] | None = None,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
) -> list[Kernel]:
    """Every kernel of one forward step on one device: embedding, all blocks, final norm
    and lm_head.

    `kept_neurons[l]` is the number of FFN neurons layer l keeps (all when None).
    """
    prec = precision or Precision()
    run = execution or Execution()
    if kept_neurons is not None and len(kept_neurons) != spec.num_layers:
        raise UserError(f"kept neurons given for {len(kept_neurons)} layers, model has {spec.num_layers}")
    kernels = [_embedding(spec, shape, prec)]
    for layer in range(spec.num_layers):
        k = None if kept_neurons is None else kept_neurons[layer]
        kernels.extend(layer_kernels(spec, shape, layer, k, prec, fusion, run))
    kernels.extend(_lm_head(spec, shape, prec, run.tp))
    return kernels


def retrigger_kernels(
    spec: ModelSpec,
    kept_neurons: Sequence[int],
    precision: Precision | None = None,
    execution: Execution | None = None,
) -> list[Kernel]:
    """The work of building and installing a new mask, per layer, on one device.

    Top-k over the layer's m scores (fp32) on the vector unit; the mask uploaded from the
    host (a bitmap for compact, the int32 index list for gather); with compact, the kept
    rows of W_gate and W_up and columns of W_down copied into contiguous buffers.
    """
    prec = precision or Precision()
    run = execution or Execution()
    shard = device_spec(spec, run.tp)
    m, d = shard.intermediate_size, spec.hidden_size
    scores_dtype = DType("fp32", 32)
    kernels = []
    for layer, kept in enumerate(kept_neurons):
        k = shard_kept(kept, run.tp)
        reads = [_a("scores", m, scores_dtype)]
        writes = []
        if run.mask_apply == "compact":
            reads.append(_w("W_ffn_kept", 3 * d * k, prec.weight))
            writes.append(_w("W_ffn_compact", 3 * d * k, prec.weight))
            upload = -(-m // 8)
        else:
            upload = tensor_bytes(k, _INDEX)
        kernels.append(
            Kernel(
                name="mask_build",
                layer=layer,
                component=Component.DART,
                unit=Unit.VECTOR,
                flops_matmul=0,
                flops_vector=TOPK_COMPARISONS_PER_ELEMENT_LOG2 * m * max(1, math.ceil(math.log2(m))),
                compute_dtype=None,
                reads=tuple(reads),
                writes=tuple(writes),
                host_bytes=upload,
            )
        )
    return kernels
