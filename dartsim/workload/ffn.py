"""The FFN half of a decoder block as kernels: SwiGLU with kept neurons (fused, merged
or separate gate and up), a per-token neuron predictor, and DART's observation work
(shapes as in workload/ops.py)."""

from __future__ import annotations

from dataclasses import replace

from dartsim.specs.model import ModelSpec
from dartsim.workload.execution import KernelFusion, Precision, StepShape
from dartsim.workload.kernels import Component, Kernel, MatmulShape, TensorAccess, TensorKind, Unit
from dartsim.workload.ops import (
    BIAS_FLOPS_PER_ELEMENT,
    DENSE,
    INDEX,
    MATMUL_FLOPS_PER_MAC,
    SCORE_FLOPS_PER_ELEMENT,
    SENSITIVITY_FLOPS_PER_ELEMENT,
    SWIGLU_FLOPS_PER_ELEMENT,
    activation,
    gemm,
    needs_input_quant,
    quantize,
    topk_flops,
    weight,
    weight_scales,
)
from dartsim.workload.sparse_storage import WeightStorage, stored_weight


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
            merged = gemm(*names, prec, bias, None, merged_rows, storage, xd, index_count=rows)
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
