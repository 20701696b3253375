"""The workload cost model: the single source of truth for FLOPs and bytes.

A step shape (prefill or decode, batch, new tokens, context length), a model spec,
storage precisions and per-layer kept-neuron counts go in; the kernels of that step come
out, each with its matmul and vector FLOPs and every tensor it reads and writes. Nothing
else in dartsim computes a FLOP or a byte count.
"""

from dartsim.workload.kernels import Component, Kernel, TensorAccess, TensorKind
from dartsim.workload.model import (
    Execution,
    KernelFusion,
    Precision,
    StepShape,
    device_spec,
    kept_count,
    layer_kernels,
    retrigger_kernels,
    step_kernels,
)
from dartsim.workload.summary import CostTotals, totals_by_component

__all__ = [
    "Component",
    "CostTotals",
    "Execution",
    "Kernel",
    "KernelFusion",
    "Precision",
    "StepShape",
    "TensorAccess",
    "TensorKind",
    "device_spec",
    "kept_count",
    "layer_kernels",
    "retrigger_kernels",
    "step_kernels",
    "totals_by_component",
]
