"""Kernel builders: one pure function per operation of a Llama-family decoder, each
returning the kernel's exact matmul and vector FLOPs and every tensor it moves. This
module holds the shared ones (GEMMs, norms, quantisation, embedding, lm_head) and the
FLOP constants; attention is in workload/attention.py, the FFN in workload/ffn.py.

The kernel accounting (which tensors each kernel reads and writes, at which precision) is
written down in docs/kernel-model.md; this module is its executable form. Shapes below use
T = batch * new_tokens (tokens in the step), d = hidden size, m = FFN width, k = kept FFN
neurons, qw = heads * head_dim, kvw = kv_heads * head_dim, V = vocabulary.
"""

from __future__ import annotations

import math

from dartsim.specs.dtypes import FP8, FP16, INT8, DType
from dartsim.specs.model import ModelSpec
from dartsim.workload.execution import Precision, StepShape
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
    index_count: int | None = None,
) -> Kernel:
    """y[T, out] = x[T, in] @ W[in, out] (+ b[out]).

    With `gather_rows` = k, the weight is read as k rows of `in_width` elements picked by an
    int32 index list (the gather path of masked FFN weights); with `strided_of` = n as well,
    the kept weights are not whole rows but k elements picked out of every n (a [d, m]
    W_down). A pruned weight is read as `storage` says (workload/sparse_storage.py); the
    matmul stays dense unless the storage is 2:4 and the device lists a 2:4 sparse peak
    (engine/machine.py). `index_count`: the indices read, when they select rows of several
    stacked matrices at once (k indices for gate and up together). `input_dtype`: x is read
    in this format (quantised by a kernel of its own) instead of the activation format.
    Sub-byte weights add their group scales and dequantisation work.
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
        indices = gather_rows if index_count is None else index_count
        reads.append(TensorAccess(f"{weight_name}.index", TensorKind.ACTIVATION, indices, INDEX))
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
