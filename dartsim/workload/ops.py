"""Kernel builders: one pure function per operation of a Llama-family decoder, each
returning the kernel's exact matmul and vector FLOPs and every tensor it moves.

The kernel accounting (which tensors each kernel reads and writes, at which precision) is
written down in docs/kernel-model.md; this module is its executable form. Shapes below use
T = batch * new_tokens (tokens in the step), d = hidden size, m = FFN width, k = kept FFN
neurons, qw = heads * head_dim, kvw = kv_heads * head_dim, V = vocabulary.
"""

from __future__ import annotations

from dartsim.specs.dtypes import DType
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
) -> Kernel:
    """y[T, out] = x[T, in] @ W[in, out] (+ b[out]).

    With `gather_rows` = k, the weight is read as k rows of `in_width` elements picked by an
    int32 index list (the gather path of masked FFN weights). A pruned weight is read as
    `storage` says (workload/sparse_storage.py); the matmul stays dense unless the storage
    is 2:4 and the device lists a 2:4 sparse peak (engine/machine.py).
    """
    w_dtype = prec.weight if weight_dtype is None else weight_dtype
    w = weight(weight_name, in_width * out_width, w_dtype)
    x = activation(input_name, tokens * in_width, prec.activation)  # x: [T, in]
    reads = [x, *stored_weight(weight_name, out_width, in_width, w_dtype, storage)]  # W: [in, out]
    if gather_rows is not None:
        row = in_width if gather_rows == out_width else out_width
        reads = [x, TensorAccess(weight_name, TensorKind.WEIGHT, w.numel, w_dtype, row)]
        reads.append(TensorAccess(f"{weight_name}.index", TensorKind.ACTIVATION, gather_rows, INDEX))
    vector = 0
    if bias:
        reads.append(weight(f"{weight_name}.bias", out_width, prec.activation))  # b: [out]
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


def attention_core(spec: ModelSpec, shape: StepShape, layer: int, prec: Precision) -> Kernel:
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
        shape.new_tokens * group, hd, max(shape.sequence_contexts), shape.batch * spec.num_kv_heads, True
    )
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
) -> list[Kernel]:
    """q/k/v projections, fused attention and o_proj of `spec`'s heads (pass a spec with
    fewer heads for a layer whose heads are pruned: every term shrinks with them)."""
    T, d = shape.tokens, spec.hidden_size
    qw, kvw, bias = spec.q_width, spec.kv_width, spec.attention_bias
    attn = Component.ATTENTION
    st = storage
    if fusion.qkv_fused:
        projections = [
            gemm("qkv_proj", layer, attn, T, d, qw + 2 * kvw, "xn", "qkv", "W_qkv", prec, bias, storage=st)
        ]
    else:
        projections = [
            gemm("q_proj", layer, attn, T, d, qw, "xn", "q", "W_q", prec, bias, storage=st),
            gemm("k_proj", layer, attn, T, d, kvw, "xn", "k", "W_k", prec, bias, storage=st),
            gemm("v_proj", layer, attn, T, d, kvw, "xn", "v", "W_v", prec, bias, storage=st),
        ]
    return [
        *projections,
        attention_core(spec, shape, layer, prec),
        gemm("o_proj", layer, attn, T, qw, d, "o", "attn_out", "W_o", prec, storage=st),
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
        reads = [activation("xn", T * d, prec.activation)]  # x: [T, d]
        if rows is None:  # W_gate, W_up: [d, k] each
            reads += stored_weight("W_gate", k, d, prec.weight, storage)
            reads += stored_weight("W_up", k, d, prec.weight, storage)
        else:
            reads.append(TensorAccess("W_gate", TensorKind.WEIGHT, d * k, prec.weight, row))
            reads.append(TensorAccess("W_up", TensorKind.WEIGHT, d * k, prec.weight, row))
        if rows is not None:
            reads.append(TensorAccess("W_gate_up.index", TensorKind.ACTIVATION, k, INDEX))
        vector = swiglu_vector
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
        up_part = [
            gemm("gate_proj", layer, mlp, T, d, k, "xn", "g", "W_gate", prec, bias, None, rows, storage),
            gemm("up_proj", layer, mlp, T, d, k, "xn", "up", "W_up", prec, bias, None, rows, storage),
            Kernel(
                name="swiglu",
                layer=layer,
                component=mlp,
                unit=Unit.VECTOR,
                flops_matmul=0,
                flops_vector=swiglu_vector,
                compute_dtype=None,
                reads=(activation("g", T * k, prec.activation), activation("up", T * k, prec.activation)),
                writes=(activation("u", T * k, prec.activation),),
            ),
        ]
    down = gemm("down_proj", layer, mlp, T, k, d, "u", "ffn_out", "W_down", prec, bias, None, rows, storage)
    return [*up_part, down]


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


def dart_observe(spec: ModelSpec, shape: StepShape, layer: int) -> Kernel:
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


def lm_head(spec: ModelSpec, shape: StepShape, prec: Precision, vocab_shard: int) -> list[Kernel]:
    """Final norm over the step's tokens, then logits for each sequence's last token only,
    over the `vocab_shard` vocabulary rows this device holds."""
    T, B, d, V = shape.tokens, shape.batch, spec.hidden_size, vocab_shard
    norm = rmsnorm("norm", None, T, d, prec)
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
