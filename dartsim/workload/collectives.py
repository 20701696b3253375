"""Tensor-parallel collectives: what each device sends over its link, per algorithm.

An all-reduce combines the `p` devices' partial sums of one tensor of S bytes:
- ring: reduce-scatter then all-gather around a ring, 2 (p - 1) steps of S / p each:
  2 (p - 1) / p x S sent per device, 2 (p - 1) link latencies (NCCL's ring);
- tree: reduce up and broadcast down a (double binary) tree: the same volume as the ring
  to first order, 2 ceil(log2 p) latencies (NCCL's tree);
- two_shot: reduce-scatter then all-gather with every peer addressed directly over a
  switch: 2 (p - 1) / p x S, two latencies (TensorRT-LLM's and vLLM's custom kernels);
- one_shot: every device reads every peer's whole tensor and reduces locally:
  (p - 1) x S, one latency; best for small messages;
- auto: one_shot up to `Execution.one_shot_max_bytes`, two_shot above.
An all-gather of a tensor of S bytes in all (the vocabulary-split logits) sends
(p - 1) / p x S per device, over p - 1 ring steps or one direct step.

The engine turns these bytes and latencies into time (engine/collectives.py); the bytes
are counted here only.
"""

from __future__ import annotations

import math

from dartsim.specs.dtypes import tensor_bytes
from dartsim.workload.execution import Execution, Precision
from dartsim.workload.kernels import Collective, Component, Kernel, TensorAccess, TensorKind, Unit

DIRECT_ALGORITHMS = ("two_shot", "one_shot")
"""Algorithms that address every peer directly (one step instead of a ring's p - 1)."""


def resolve_allreduce(payload_bytes: int, run: Execution) -> str:
    """The algorithm actually used for a message of `payload_bytes`."""
    if run.allreduce != "auto":
        return run.allreduce
    return "one_shot" if payload_bytes <= run.one_shot_max_bytes else "two_shot"


def allreduce_traffic(payload_bytes: int, tp: int, algorithm: str) -> tuple[int, int]:
    """(bytes each device sends, link latencies on the critical path) of one all-reduce."""
    if tp == 1:
        return 0, 0
    if algorithm == "one_shot":
        return (tp - 1) * payload_bytes, 1
    sent = 2 * (tp - 1) * payload_bytes // tp
    if algorithm == "two_shot":
        return sent, 2
    if algorithm == "tree":
        return sent, 2 * math.ceil(math.log2(tp))
    return sent, 2 * (tp - 1)


def allgather_traffic(total_bytes: int, tp: int, algorithm: str) -> tuple[int, int]:
    """(bytes each device sends, link latencies) of gathering a `total_bytes` tensor whose
    `tp` shards live on different devices."""
    if tp == 1:
        return 0, 0
    hops = 1 if algorithm in DIRECT_ALGORITHMS or algorithm == "auto" else tp - 1
    return (tp - 1) * total_bytes // tp, hops


def all_reduce(
    name: str,
    layer: int | None,
    component: Component,
    tokens: int,
    width: int,
    prec: Precision,
    run: Execution,
) -> Kernel:
    """All-reduce of the [T, width] partial sums at the activation precision; the kernel
    reads the local partial and writes the reduced tensor in DRAM."""
    numel = tokens * width
    payload = tensor_bytes(numel, prec.activation)
    algorithm = resolve_allreduce(payload, run)
    sent, hops = allreduce_traffic(payload, run.tp, algorithm)
    return Kernel(
        name=name,
        layer=layer,
        component=component,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=(run.tp - 1) * numel,  # the reduction adds
        compute_dtype=None,
        reads=(TensorAccess("partial", TensorKind.ACTIVATION, numel, prec.activation),),
        writes=(TensorAccess("reduced", TensorKind.ACTIVATION, numel, prec.activation),),
        link_bytes=sent,
        collective=Collective("all_reduce", algorithm, run.tp, payload, hops),
    )


def all_gather(
    name: str, component: Component, rows: int, width: int, prec: Precision, run: Execution
) -> Kernel:
    """All-gather of a [rows, width] tensor split by columns over the devices (the logits
    of a vocabulary-split lm_head): each device writes the whole gathered tensor."""
    numel = rows * width
    total = tensor_bytes(numel, prec.activation)
    algorithm = resolve_allreduce(total, run)
    sent, hops = allgather_traffic(total, run.tp, algorithm)
    return Kernel(
        name=name,
        layer=None,
        component=component,
        unit=Unit.VECTOR,
        flops_matmul=0,
        flops_vector=0,
        compute_dtype=None,
        reads=(),
        writes=(TensorAccess("gathered", TensorKind.ACTIVATION, numel, prec.activation),),
        link_bytes=sent,
        collective=Collective("all_gather", algorithm, run.tp, total, hops),
    )
