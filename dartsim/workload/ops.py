"""Kernel builders: one pure function per operation of a Llama-family decoder, each
returning the kernel's exact matmul and vector FLOPs and every tensor it moves.

The kernel accounting (which tensors each kernel reads and writes, at which precision) is
written down in docs/kernel-model.md; this module is its executable form. Shapes below use
T = batch * new_tokens (tokens in the step), d = hidden size, m = FFN width, k = kept FFN
neurons, qw = heads * head_dim, kvw = kv_heads * head_dim, V = vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import replace

from dartsim.specs.dtypes import FP8, FP16, INT8, DType
from dartsim.specs.model import ModelSpec
from dartsim.workload.execution import KernelFusion, Precision, StepShape
from dartsim.workload.kernels import Component, Kernel, MatmulShape, TensorAccess, TensorKind, Unit
from dartsim.workload.sparse_storage import WeightStorage, stored_weight

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
INDEX_DTYPE_BITS = 32
"""Kept-neuron indices of the gather path are int32."""
SCORE_FLOPS_PER_ELEMENT = 2
"""s_i += u_i^2: a multiply and an add per neuron and token."""
SENSITIVITY_FLOPS_PER_ELEMENT = 8
"""Eq. 4 per token: y.z, |y|, |z|, |z - y| (two FLOPs each per element)."""
INDEX = DType("int32", INDEX_DTYPE_BITS)
TOPK_COMPARISONS_PER_ELEMENT_LOG2 = 1
"""Top-k by sorting: n log2(n) comparisons, one FLOP each, on the vector unit."""
DENSE = WeightStorage()
QUANT_GROUP_ELEMENTS = 128
"""Weights per scale of sub-byte (int4) weights: group-wise quantisation along the input
dimension, as GPTQ and AWQ checkpoints store it (AWQ, Lin et al. 2024: "group size 128"
as the default setting; GPTQ's --groupsize 128)."""
SCALE_DTYPE = FP16
"""Group scales are stored in FP16 (GPTQ and AWQ checkpoints)."""
DEQUANT_FLOPS_PER_ELEMENT = 2
"""An int4 weight is converted to the compute format and multiplied by its group's scale
(the zero point folded into the scale product) before the matrix multiply."""
QUANT_FLOPS_PER_ELEMENT = 3
"""Dynamic per-token FP8/INT8 quantisation of a GEMM input: |x| into the row's running
max, the multiply by the scale, the conversion."""
LOW_PRECISION_COMPUTE = (FP8, INT8)


def needs_input_quant(prec: Precision) -> bool:
    """Weight GEMMs compute in FP8/INT8 while activations are stored wider: their inputs
    are quantised first (inside the producing kernel, or by a kernel of their own)."""
    return prec.gemm_compute in LOW_PRECISION_COMPUTE and prec.gemm_compute != prec.activation


def weight_scales(name: str, numel: int, dtype: DType) -> tuple[list[TensorAccess], int]:
    """The group scales read with `numel` sub-byte weights, and the vector FLOPs of
    dequantising them (none for 8-bit and wider formats, whose per-tensor or per-channel
    scales are negligible)."""
    if dtype.bits >= INT8.bits:
        return [], 0
    scales = weight(f"{name}.scales", math.ceil(numel / QUANT_GROUP_ELEMENTS), SCALE_DTYPE)
    return [scales], DEQUANT_FLOPS_PER_ELEMENT * numel


def topk_flops(n: int) -> int:
    """Vector FLOPs of a top-k over n scores by sorting: n ceil(log2 n) comparisons."""
    return TOPK_COMPARISONS_PER_ELEMENT_LOG2 * n * max(1, (n - 1).bit_length())


def weight(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.WEIGHT, numel, dtype)


def activation(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.ACTIVATION, numel, dtype)


def kv_cache(name: str, numel: int, dtype: DType) -> TensorAccess:
    return TensorAccess(name, TensorKind.KV_CACHE, numel, dtype)


def gemm(
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
    storage: WeightStorage = DENSE,
    input_dtype: DType | None = None,
    strided_of: int | None = None,
) -> Kernel:
    """y[T, out] = x[T, in] @ W[in, out] (+ b[out]).

    With `gather_rows` = k, the weight is read as k rows of `in_width` elements picked by an
    int32 index list (the gather path of masked FFN weights); with `strided_of` = n as well,
    the kept weights are not whole rows but k elements picked out of every n (a [d, m]
    W_down). A pruned weight is read as `storage` says (workload/sparse_storage.py); the
    matmul stays dense unless the storage is 2:4 and the device lists a 2:4 sparse peak
    (engine/machine.py). `input_dtype`: x is read in this format (quantised by a kernel of
    its own) instead of the activation format. Sub-byte weights add their group scales and
    dequantisation work.
    """
    w_dtype = prec.weight if weight_dtype is None else weight_dtype
    w = weight(weight_name, in_width * out_width, w_dtype)
    x_dtype = prec.activation if input_dtype is None else input_dtype
    x = activation(input_name, tokens * in_width, x_dtype)  # x: [T, in]
    reads = [x, *stored_weight(weight_name, out_width, in_width, w_dtype, storage)]  # W: [in, out]
    if gather_rows is not None:
        row = in_width if gather_rows == out_width else out_width
        if strided_of is not None:
            picked = (gather_rows, strided_of)
            reads = [x, TensorAccess(weight_name, TensorKind.WEIGHT, w.numel, w_dtype, 1, picked)]
        else:
            reads = [x, TensorAccess(weight_name, TensorKind.WEIGHT, w.numel, w_dtype, row)]
        reads.append(TensorAccess(f"{weight_name}.index", TensorKind.ACTIVATION, gather_rows, INDEX))
    scales, dequant = weight_scales(weight_name, reads[1].numel, w_dtype)  # reads[1]: the values
    reads += scales
    vector = dequant
    if bias:
        reads.append(weight(f"{weight_name}.bias", out_width, prec.activation))  # b: [out]
        vector += BIAS_FLOPS_PER_ELEMENT * tokens * out_width
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
        writes=(activation(output_name, tokens * out_width, prec.activation),),  # y: [T, out]
        shape=MatmulShape(tokens, out_width, in_width),
        sparse_2to4=storage.sparse_2to4 and gather_rows is None,
    )


def rmsnorm(name: str, layer: int | None, tokens: int, width: int, prec: Precision) -> Kernel:
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
            activation("h", tokens * width, prec.activation),
            weight(f"{name}.weight", width, prec.activation),
        ),
        writes=(activation("xn", tokens * width, prec.activation),),
    )


def add_rmsnorm(name: str, layer: int | None, tokens: int, width: int, prec: Precision) -> Kernel:
    """h'[T, d] = h + f and xn = h' / rms(h') * w in one kernel (a fused add + RMSNorm,
    vLLM's fused_add_rms_norm): it writes both the new residual stream and its norm."""
    return Kernel(
        name=name,
        layer=layer,
        component=Component.NORM_RESIDUAL,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=(RESIDUAL_FLOPS_PER_ELEMENT + RMSNORM_FLOPS_PER_ELEMENT) * tokens * width,
        compute_dtype=None,
        reads=(
            activation("h", tokens * width, prec.activation),
            activation("f", tokens * width, prec.activation),
            weight(f"{name}.weight", width, prec.activation),
        ),
        writes=(
            activation("h_out", tokens * width, prec.activation),
            activation("xn", tokens * width, prec.activation),
        ),
    )


def quantize(name: str, layer: int, component: Component, tokens: int, width: int, prec: Precision) -> Kernel:
    """x8[T, width] = quant(x): a GEMM input quantised to the GEMM's FP8/INT8 format by a
    kernel of its own (stacks that do not fuse it into the producing kernel)."""
    return Kernel(
        name=name,
        layer=layer,
        component=component,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=QUANT_FLOPS_PER_ELEMENT * tokens * width,
        compute_dtype=None,
        reads=(activation("x", tokens * width, prec.activation),),
        writes=(activation("x_quant", tokens * width, prec.gemm_compute),),
    )


def residual(name: str, layer: int, tokens: int, width: int, prec: Precision) -> Kernel:
    """h'[T, d] = h + f."""
    return Kernel(
        name=name,
        layer=layer,
        component=Component.NORM_RESIDUAL,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=RESIDUAL_FLOPS_PER_ELEMENT * tokens * width,
        compute_dtype=None,
        reads=(
            activation("h", tokens * width, prec.activation),
            activation("f", tokens * width, prec.activation),
        ),
        writes=(activation("h_out", tokens * width, prec.activation),),
    )


def attention_core(
    spec: ModelSpec, shape: StepShape, layer: int, prec: Precision, low_precision: bool = True
) -> Kernel:
    """Fused attention with KV-cache append (FlashAttention `with_kvcache` style).

    Reads q and the new k, v, applies RoPE (and Qwen3's q/k norms) in registers, appends the
    new k, v to the cache, reads the cached positions, and writes the attention output.
    Its matmuls compute in the KV cache's FP8/INT8 where `low_precision` (else at the
    activation format). Sequences of a batched prefill attend each to its own prompt.
    """
    T = shape.tokens
    qw, kvw, hd = spec.q_width, spec.kv_width, spec.head_dim
    cached = shape.cached_total  # cached positions over the batch
    appended = T  # one new cache row per new token
    pairs = shape.attention_pairs
    reads = [
        activation("q", T * qw, prec.activation),  # q: [T, H, hd]
        activation("k", T * kvw, prec.activation),  # k_new: [T, KV, hd]
        activation("v", T * kvw, prec.activation),  # v_new: [T, KV, hd]
        kv_cache("k_cache", cached * kvw, prec.kv_cache),  # K: [B, c0, KV, hd]
        kv_cache("v_cache", cached * kvw, prec.kv_cache),  # V: [B, c0, KV, hd]
    ]
    vector = SOFTMAX_FLOPS_PER_SCORE * spec.num_heads * pairs
    vector += ROPE_FLOPS_PER_ELEMENT * T * (qw + kvw)
    if spec.qk_norm:
        reads.append(weight("q_norm.weight", hd, prec.activation))
        reads.append(weight("k_norm.weight", hd, prec.activation))
        vector += RMSNORM_FLOPS_PER_ELEMENT * T * (qw + kvw)
    group = spec.num_heads // spec.num_kv_heads  # query heads sharing one KV head
    # FlashAttention tiles: [query rows x head_dim] outputs, each looping over the keys.
    tiling = MatmulShape(
        max(shape.sequence_news) * group,
        hd,
        max(shape.sequence_contexts),
        shape.batch * spec.num_kv_heads,
        attention=True,
        decode=max(shape.sequence_news) == 1,
    )
    return Kernel(
        name="attention",
        layer=layer,
        component=Component.ATTENTION,
        unit=Unit.TENSOR,
        # S = Q K^T and O = P V: each H * pairs * hd multiply-adds.
        flops_matmul=2 * MATMUL_FLOPS_PER_MAC * spec.num_heads * pairs * hd,
        flops_vector=vector,
        compute_dtype=prec.attention_compute(low_precision),
        reads=tuple(reads),
        writes=(
            kv_cache("k_cache_new", appended * kvw, prec.kv_cache),  # [B, n, KV, hd]
            kv_cache("v_cache_new", appended * kvw, prec.kv_cache),
            activation("o", T * qw, prec.activation),  # o: [T, H, hd]
        ),
        shape=tiling,
    )


def attention_kernels(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    prec: Precision,
    fusion: KernelFusion,
    storage: WeightStorage = DENSE,
    low_precision_attention: bool = True,
) -> list[Kernel]:
    """q/k/v projections, fused attention and o_proj of `spec`'s heads (pass a spec with
    fewer heads for a layer whose heads are pruned: every term shrinks with them), with
    the quantisation of the GEMM inputs as kernels of their own where `fusion` says so."""
    T, d = shape.tokens, spec.hidden_size
    qw, kvw, bias = spec.q_width, spec.kv_width, spec.attention_bias
    attn = Component.ATTENTION
    st = storage
    quant = not fusion.activation_quant and needs_input_quant(prec)
    xd = prec.gemm_compute if quant else None  # the format the GEMMs read their inputs in
    if fusion.qkv_fused:
        projections = [
            gemm("qkv_proj", layer, attn, T, d, qw + 2 * kvw, "xn", "qkv", "W_qkv", prec, bias, storage=st,
                 input_dtype=xd)
        ]  # fmt: skip
    else:
        projections = [
            gemm("q_proj", layer, attn, T, d, qw, "xn", "q", "W_q", prec, bias, storage=st, input_dtype=xd),
            gemm("k_proj", layer, attn, T, d, kvw, "xn", "k", "W_k", prec, bias, storage=st, input_dtype=xd),
            gemm("v_proj", layer, attn, T, d, kvw, "xn", "v", "W_v", prec, bias, storage=st, input_dtype=xd),
        ]
    o_proj = gemm("o_proj", layer, attn, T, qw, d, "o", "attn_out", "W_o", prec, storage=st, input_dtype=xd)
    if not quant:
        return [*projections, attention_core(spec, shape, layer, prec, low_precision_attention), o_proj]
    return [
        quantize("qkv_input_quant", layer, attn, T, d, prec),
        *projections,
        attention_core(spec, shape, layer, prec, low_precision_attention),
        quantize("o_input_quant", layer, attn, T, qw, prec),
        o_proj,
    ]


def mlp_kernels(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    kept: int,
    prec: Precision,
    fusion: KernelFusion,
    gather: bool,
    storage: WeightStorage = DENSE,
    observe_flops: int = 0,
) -> list[Kernel]:
    """SwiGLU FFN with `kept` of its m neurons: rows of W_gate/W_up and columns of W_down.

    With `gather`, the kept rows are read by index from the full matrices at every step
    (in an input-major W_down, `fusion.down_input_major`, a neuron's weights are scattered
    elements rather than a row); otherwise they are contiguous (compacted at the
    re-trigger, or the FFN is dense). `observe_flops` is vector work fused into down_proj
    (DART's scores and sensitivity in dense collection steps: no kernel of its own).
    """
    T, d, k, m = shape.tokens, spec.hidden_size, kept, spec.intermediate_size
    mlp, bias = Component.MLP, spec.mlp_bias
    rows = k if gather and k < m else None
    quant = not fusion.activation_quant and needs_input_quant(prec)
    xd = prec.gemm_compute if quant else None  # the format the GEMMs read their inputs in
    x_dtype = prec.activation if xd is None else xd
    swiglu_vector = SWIGLU_FLOPS_PER_ELEMENT * T * k
    if fusion.swiglu_fused:
        row = None if rows is None else d
        reads = [activation("xn", T * d, x_dtype)]  # x: [T, d]
        if rows is None:  # W_gate, W_up: [d, k] each
            reads += stored_weight("W_gate", k, d, prec.weight, storage)
            reads += stored_weight("W_up", k, d, prec.weight, storage)
        else:
            reads.append(TensorAccess("W_gate", TensorKind.WEIGHT, d * k, prec.weight, row))
            reads.append(TensorAccess("W_up", TensorKind.WEIGHT, d * k, prec.weight, row))
        scales, dequant = weight_scales("W_gate_up", 2 * d * k, prec.weight)
        reads += scales
        if rows is not None:
            reads.append(TensorAccess("W_gate_up.index", TensorKind.ACTIVATION, k, INDEX))
        vector = swiglu_vector + dequant
        if bias:
            reads += [weight("W_gate.bias", k, prec.activation), weight("W_up.bias", k, prec.activation)]
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
                writes=(activation("u", T * k, prec.activation),),  # u: [T, k]
                shape=MatmulShape(T, 2 * k, d),  # [T, d] @ [d, 2k]
                sparse_2to4=storage.sparse_2to4 and rows is None,
            )
        ]
    else:
        activation_kernel = Kernel(
            name="swiglu",
            layer=layer,
            component=mlp,
            unit=Unit.VECTOR,
            flops_matmul=0,
            flops_vector=swiglu_vector,
            compute_dtype=None,
            reads=(activation("g", T * k, prec.activation), activation("up", T * k, prec.activation)),
            writes=(activation("u", T * k, prec.activation),),
        )
        if fusion.gate_up_merged:  # one GEMM of [d, 2k]: x read once, [T, 2k] written
            merged_rows = None if rows is None else 2 * rows
            names = ("gate_up_proj", layer, mlp, T, d, 2 * k, "xn", "gate_up", "W_gate_up")
            merged = gemm(*names, prec, bias, None, merged_rows, storage, xd)
            up_part = [merged, activation_kernel]
        else:
            up_part = [
                gemm(
                    "gate_proj", layer, mlp, T, d, k, "xn", "g", "W_gate", prec, bias, None, rows, storage, xd
                ),
                gemm("up_proj", layer, mlp, T, d, k, "xn", "up", "W_up", prec, bias, None, rows, storage, xd),
                activation_kernel,
            ]
    strided = m if rows is not None and fusion.down_input_major else None
    down_names = ("down_proj", layer, mlp, T, k, d, "u", "ffn_out", "W_down")
    down = gemm(*down_names, prec, bias, None, rows, storage, xd, strided)
    if observe_flops:
        down = replace(down, flops_vector=down.flops_vector + observe_flops)
    if not quant:
        return [*up_part, down]
    return [quantize("ffn_input_quant", layer, mlp, T, d, prec), *up_part,
            quantize("down_input_quant", layer, mlp, T, k, prec), down]  # fmt: skip


def dart_observe_flops(spec: ModelSpec, shape: StepShape) -> int:
    """DART's bookkeeping in a dense collection step, per layer: neuron scores from u and
    the Eq. 4 sensitivity (vector work done inside the FFN kernels: no DRAM traffic and no
    kernel of its own)."""
    T = shape.tokens
    scores = SCORE_FLOPS_PER_ELEMENT * T * spec.intermediate_size
    return scores + SENSITIVITY_FLOPS_PER_ELEMENT * T * spec.hidden_size


def ffn_predictor(
    spec: ModelSpec, shape: StepShape, layer: int, rank: int, kept: int, prec: Precision
) -> Kernel:
    """A rank-r neuron predictor before the FFN (Deja Vu-style): scores[T, m] = (x A) B
    with A [d, r], B [r, m] at the weight precision, then each token's top-k by sorting.
    Its indices feed the FFN's gather of kept rows."""
    T, d, m = shape.tokens, spec.hidden_size, spec.intermediate_size
    topk = T * topk_flops(m)  # each token ranks its m scores
    return Kernel(
        name="ffn_predictor",
        layer=layer,
        component=Component.MLP,
        unit=Unit.TENSOR,
        flops_matmul=MATMUL_FLOPS_PER_MAC * T * (d * rank + rank * m),
        flops_vector=topk,
        compute_dtype=prec.gemm_compute,
        reads=(
            activation("xn", T * d, prec.activation),  # x: [T, d]
            weight("predictor_A", d * rank, prec.weight),  # A: [d, r]
            weight("predictor_B", rank * m, prec.weight),  # B: [r, m]
        ),
        writes=(TensorAccess("kept.index", TensorKind.ACTIVATION, T * kept, INDEX),),  # [T, k]
        shape=MatmulShape(T, rank, d),
    )


def embedding(spec: ModelSpec, shape: StepShape, prec: Precision, tp: int = 1) -> Kernel:
    """Row gather: h[T, d] = E[ids]; reads only the rows it needs.

    Under tensor parallelism the table is split by vocabulary (Megatron's vocab-parallel
    embedding): each device reads the rows whose ids it holds and zeroes the rest, and an
    all-reduce combines them. Ids are charged evenly: the busiest device reads ceil(T / tp)
    rows and writes the whole [T, d] partial.
    """
    T, d = shape.tokens, spec.hidden_size
    rows = -(-T // tp)
    return Kernel(
        name="embed_tokens",
        layer=None,
        component=Component.EMBEDDING,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=0,
        compute_dtype=None,
        reads=(weight("E_rows", rows * d, prec.activation),),
        writes=(activation("h", T * d, prec.activation),),
    )


def lm_head(
    spec: ModelSpec, shape: StepShape, prec: Precision, vocab_shard: int, add_residual: bool = False
) -> list[Kernel]:
    """Final norm over the step's tokens (adding the last FFN's output first when residual
    adds are fused into norms), then logits for each sequence's last token only, over the
    `vocab_shard` vocabulary rows this device holds."""
    T, B, d, V = shape.tokens, shape.batch, spec.hidden_size, vocab_shard
    norm = (add_rmsnorm if add_residual else rmsnorm)("norm", None, T, d, prec)
    head = gemm(
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


def prompt_classifier(spec: ModelSpec, classes: int, prec: Precision) -> Kernel:
    """A nearest-centroid prompt classifier (KG-DS): cosine of the prompt's mean embedding
    [d] with `classes` centroids [classes, d] (the mean itself is folded into prefill)."""
    d = spec.hidden_size
    return Kernel(
        name="prompt_classifier",
        layer=None,
        component=Component.DART,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=MATMUL_FLOPS_PER_MAC * classes * d,
        compute_dtype=None,
        reads=(
            activation("prompt_mean", d, prec.activation),
            weight("centroids", classes * d, prec.activation),
        ),
        writes=(),
    )
