"""The kernels of a whole Llama-family decoder step on one device, in execution order.

The builders of single operations live in `ops` (matmuls, norms), `attention`, `ffn` and
`collectives` (tensor-parallel all-reduce and all-gather); this module assembles them into
decoder blocks, whole steps and the work of a DART mask build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from dartsim.errors import UserError
from dartsim.specs.dtypes import FP32
from dartsim.specs.model import ModelSpec
from dartsim.workload import ffn, ops
from dartsim.workload.attention import attention_kernels
from dartsim.workload.collectives import all_gather, all_reduce
from dartsim.workload.execution import (
    Execution,
    KernelFusion,
    Precision,
    StepShape,
    check_tensor_parallel,
    device_spec,
    kept_count,
    shard_kept,
)
from dartsim.workload.kernels import Component, Kernel, TensorAccess, TensorKind, Unit
from dartsim.workload.sparse_storage import BIT

__all__ = [
    "Execution",
    "KernelFusion",
    "Precision",
    "StepShape",
    "attention_block",
    "check_tensor_parallel",
    "device_spec",
    "kept_count",
    "layer_kernels",
    "mlp_block",
    "retrigger_kernels",
    "step_epilogue",
    "step_kernels",
    "step_prologue",
]

MASK_BITS_PER_NEURON = 1
"""The compact path uploads the mask as a bitmap."""


def attention_block(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
    heads: tuple[int, int] | None = None,
) -> list[Kernel]:
    """The first half of decoder block `layer`: input norm, attention (with its all-reduce
    under tensor parallelism) and the residual add. It does not depend on the FFN mask.

    With `fusion.norm_residual` each residual add runs in the next norm's kernel: the
    input norm of a layer after the first adds the previous FFN's output, and the
    attention's own residual moves into the MLP block's post-attention norm.

    `heads` = (query heads, KV heads) the layer keeps when a policy prunes heads (all by
    default); under tensor parallelism the busiest device holds ceil(kept / tp) of each."""
    prec = precision or Precision()
    run = execution or Execution()
    fuse = fusion or run.fusion
    shard = device_spec(spec, run.tp)
    if heads is not None:
        shard = pruned_heads(spec, shard, heads, run.tp)
    T, d = shape.tokens, spec.hidden_size
    low = run.attention_low_precision
    attention = attention_kernels(shard, shape, layer, prec, fuse, run.weights, low)
    if run.tp > 1:
        attention.append(all_reduce("attn_all_reduce", layer, Component.ATTENTION, T, d, prec, run))
    if not fuse.norm_residual:
        return [
            ops.rmsnorm("input_layernorm", layer, T, d, prec),
            *attention,
            ops.residual("attn_residual", layer, T, d, prec),
        ]
    if layer == 0:  # the embedding output: nothing to add yet
        return [ops.rmsnorm("input_layernorm", layer, T, d, prec), *attention]
    return [ops.add_rmsnorm("input_add_layernorm", layer, T, d, prec), *attention]


def mlp_block(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    kept_neurons: int | None = None,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
) -> list[Kernel]:
    """The second half of decoder block `layer`: post-attention norm, the FFN with `kept`
    of its neurons (its all-reduce under tensor parallelism), the residual add, and DART's
    observation work in dense collection steps (fused into down_proj)."""
    prec = precision or Precision()
    run = execution or Execution()
    m = spec.intermediate_size
    k = m if kept_neurons is None else kept_neurons
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= m:
        raise UserError(f"layer {layer}: kept neurons must be an integer in [0, {m}], got {k!r}")
    shard = device_spec(spec, run.tp)
    T, d = shape.tokens, spec.hidden_size
    fuse = fusion or run.fusion
    kept = shard_kept(k, run.tp)
    observe = ffn.dart_observe_flops(shard, shape) if run.dart_observe else 0
    gather = run.mask_apply == "gather"
    mlp = ffn.mlp_kernels(shard, shape, layer, kept, prec, fuse, gather, run.weights, observe)
    if run.predictor_rank > 0:  # each device predicts its own shard's neurons
        mlp.insert(0, ffn.ffn_predictor(shard, shape, layer, run.predictor_rank, kept, prec))
    if run.tp > 1:
        mlp.append(all_reduce("mlp_all_reduce", layer, Component.MLP, T, d, prec, run))
    if fuse.norm_residual:  # the FFN's residual add runs in the next layer's (or the final) norm
        return [ops.add_rmsnorm("post_attention_add_layernorm", layer, T, d, prec), *mlp]
    return [
        ops.rmsnorm("post_attention_layernorm", layer, T, d, prec),
        *mlp,
        ops.residual("mlp_residual", layer, T, d, prec),
    ]


def pruned_heads(spec: ModelSpec, shard: ModelSpec, heads: tuple[int, int], tp: int) -> ModelSpec:
    """The shard with a policy's kept (query, KV) heads of the whole layer."""
    q, kv = heads
    if not (1 <= q <= spec.num_heads and 1 <= kv <= spec.num_kv_heads):
        raise UserError(
            f"kept heads ({q}, {kv}) must lie within the model's ({spec.num_heads}, {spec.num_kv_heads})"
        )
    return replace(shard, num_heads=-(-q // tp), num_kv_heads=min(shard.num_kv_heads, -(-kv // tp)))


def layer_kernels(
    spec: ModelSpec,
    shape: StepShape,
    layer: int,
    kept_neurons: int | None = None,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
    heads: tuple[int, int] | None = None,
) -> list[Kernel]:
    """The kernels of decoder block `layer` on one device, in execution order.

    `spec` is the whole model; under tensor parallelism (`execution.tp` > 1) the kernels
    are those of one device's shard, with an all-reduce after o_proj and after down_proj.
    `kept_neurons` counts the whole layer's kept neurons.
    """
    mlp = mlp_block(spec, shape, layer, kept_neurons, precision, fusion, execution)
    return [*attention_block(spec, shape, layer, precision, fusion, execution, heads), *mlp]


def step_prologue(
    spec: ModelSpec, shape: StepShape, precision: Precision | None = None, execution: Execution | None = None
) -> list[Kernel]:
    """Before the blocks: the embedding lookup (and its all-reduce when vocabulary-split)."""
    prec = precision or Precision()
    run = execution or Execution()
    kernels = [ops.embedding(spec, shape, prec, run.tp)]
    if run.tp > 1:
        d = spec.hidden_size
        kernels.append(all_reduce("embed_all_reduce", None, Component.EMBEDDING, shape.tokens, d, prec, run))
    return kernels


def step_epilogue(
    spec: ModelSpec, shape: StepShape, precision: Precision | None = None, execution: Execution | None = None
) -> list[Kernel]:
    """After the blocks: final norm and lm_head (and the gather of vocabulary-split logits)."""
    prec = precision or Precision()
    run = execution or Execution()
    kernels = ops.lm_head(spec, shape, prec, device_spec(spec, run.tp).vocab_size, run.fusion.norm_residual)
    if run.tp > 1:
        kernels.append(
            all_gather("logits_all_gather", Component.LM_HEAD, shape.batch, spec.vocab_size, prec, run)
        )
    return kernels


def step_kernels(
    spec: ModelSpec,
    shape: StepShape,
    kept_neurons: Sequence[int] | None = None,
    precision: Precision | None = None,
    fusion: KernelFusion | None = None,
    execution: Execution | None = None,
    heads: Sequence[tuple[int, int] | None] | None = None,
) -> list[Kernel]:
    """Every kernel of one forward step on one device: embedding, all blocks, final norm
    and lm_head; under tensor parallelism also the embedding's all-reduce and the
    gather of the vocabulary-split logits.

    `kept_neurons[l]` is the number of FFN neurons layer l keeps (all when None);
    `heads[l]` the (query, KV) heads it keeps (all when None).
    """
    if kept_neurons is not None and len(kept_neurons) != spec.num_layers:
        raise UserError(f"kept neurons given for {len(kept_neurons)} layers, model has {spec.num_layers}")
    kernels = step_prologue(spec, shape, precision, execution)
    for layer in range(spec.num_layers):
        k = None if kept_neurons is None else kept_neurons[layer]
        h = None if heads is None else heads[layer]
        kernels.extend(layer_kernels(spec, shape, layer, k, precision, fusion, execution, h))
    kernels.extend(step_epilogue(spec, shape, precision, execution))
    return kernels


def retrigger_kernels(
    spec: ModelSpec,
    kept_neurons: Sequence[int],
    precision: Precision | None = None,
    execution: Execution | None = None,
    topk: bool = True,
    classifier_classes: int = 0,
) -> list[Kernel]:
    """The work of building and installing a new mask, per layer, on one device.

    Top-k over the layer's m scores (fp32) on the vector unit, writing the mask in device
    memory (a bitmap for compact, the int32 index list for gather); a mask computed offline
    (`topk` False) is uploaded from the host instead. With compact, the kept rows of
    W_gate and W_up and the kept neurons of W_down are gathered into contiguous buffers
    (rows of d elements; in an input-major W_down, elements picked out of every m). With
    `classifier_classes` > 0, a prompt classifier picks the mask first (KG-DS).
    """
    prec = precision or Precision()
    run = execution or Execution()
    shard = device_spec(spec, run.tp)
    m, d = shard.intermediate_size, spec.hidden_size
    kernels = [ops.prompt_classifier(spec, classifier_classes, prec)] if classifier_classes else []
    for layer, kept in enumerate(kept_neurons):
        k = shard_kept(kept, run.tp)
        reads = [ops.activation("scores", m, FP32)] if topk else []
        writes = []
        if run.mask_apply == "compact":
            mask = ops.activation("mask", m * MASK_BITS_PER_NEURON, BIT)
            row = d if k < m else None
            reads.append(TensorAccess("W_gate_up_kept", TensorKind.WEIGHT, 2 * d * k, prec.weight, row))
            if run.fusion.down_input_major and k < m:
                reads.append(TensorAccess("W_down_kept", TensorKind.WEIGHT, d * k, prec.weight, 1, (k, m)))
            else:
                reads.append(TensorAccess("W_down_kept", TensorKind.WEIGHT, d * k, prec.weight, row))
            writes.append(ops.weight("W_ffn_compact", 3 * d * k, prec.weight))
        else:
            mask = ops.activation("kept.index", k, ops.INDEX)
        if topk:
            writes.append(mask)
        kernels.append(
            Kernel(
                name="mask_build",
                layer=layer,
                component=Component.DART,
                unit=Unit.VECTOR,
                flops_matmul=0,
                flops_vector=ops.topk_flops(m) if topk else 0,
                compute_dtype=None,
                reads=tuple(reads),
                writes=tuple(writes),
                host_bytes=0 if topk else mask.bytes,
            )
        )
    return kernels
