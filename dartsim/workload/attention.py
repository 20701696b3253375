"""The attention half of a decoder block as kernels: the q/k/v projections, fused
attention with its KV-cache append, and o_proj (shapes as in workload/ops.py)."""

from __future__ import annotations

from dartsim.specs.model import ModelSpec
from dartsim.workload.execution import KernelFusion, Precision, StepShape
from dartsim.workload.kernels import Component, Kernel, MatmulShape, Unit
from dartsim.workload.ops import (
    DENSE,
    MATMUL_FLOPS_PER_MAC,
    RMSNORM_FLOPS_PER_ELEMENT,
    ROPE_FLOPS_PER_ELEMENT,
    SOFTMAX_FLOPS_PER_SCORE,
    activation,
    gemm,
    kv_cache,
    needs_input_quant,
    quantize,
    weight,
)
from dartsim.workload.sparse_storage import WeightStorage


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
