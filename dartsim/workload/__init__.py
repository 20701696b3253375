"""The workload cost model: the single source of truth for FLOPs and bytes.

A step shape (prefill or decode, batch, new tokens, context length), a model spec,
storage precisions and per-layer kept-neuron counts go in; the kernels of that step come
out, each with its matmul and vector FLOPs and every tensor it reads and writes. Nothing
else in dartsim computes a FLOP or a byte count.
"""

from dartsim.workload.execution import (
    Execution,
    KernelFusion,
    Precision,
    StepShape,
    check_tensor_parallel,
    device_spec,
    kept_count,
)
from dartsim.workload.kernels import Collective, Component, Kernel, MatmulShape, TensorAccess, TensorKind
from dartsim.workload.model import layer_kernels, retrigger_kernels, step_kernels
from dartsim.workload.summary import CostTotals, totals_by_component

__all__ = [
    "Collective",
    "Component",
    "CostTotals",
    "Execution",
    "Kernel",
    "KernelFusion",
    "MatmulShape",
    "Precision",
    "StepShape",
    "TensorAccess",
    "TensorKind",
    "check_tensor_parallel",
    "device_spec",
    "kept_count",
    "layer_kernels",
    "retrigger_kernels",
    "step_kernels",
    "totals_by_component",
]
