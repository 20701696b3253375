"""Closed-form bounds on a step's time, for cross-checking the discrete-event engine."""

from __future__ import annotations

from collections.abc import Sequence

from dartsim.engine.machine import Rates
from dartsim.workload.kernels import Kernel


def compute_time(kernel: Kernel, r: Rates) -> float:
    """Arithmetic time: matmul FLOPs on the tensor unit, vector FLOPs on the vector unit,
    the two overlapping."""
    tensor = kernel.flops_matmul / r.tensor_rate(kernel.compute_dtype) if kernel.flops_matmul else 0.0  # type: ignore[arg-type]
    return max(tensor, kernel.flops_vector / r.vector_flops_per_s)


def roofline_time(kernel: Kernel, r: Rates) -> float:
    """The larger of bytes over bandwidth and FLOPs over throughput."""
    return max(kernel.bytes / r.dram_bytes_per_s, compute_time(kernel, r))


def serial_time(kernels: Sequence[Kernel], r: Rates) -> float:
    """Kernels one after another, memory and compute overlapping only within a kernel."""
    return sum(roofline_time(k, r) for k in kernels)


def overlapped_bounds(kernels: Sequence[Kernel], r: Rates) -> tuple[float, float]:
    """(lower, upper) for perfect cross-kernel overlap: the busiest resource's total, and
    that plus the longest single kernel (pipeline fill and drain)."""
    lower = max(sum(k.bytes for k in kernels) / r.dram_bytes_per_s, sum(compute_time(k, r) for k in kernels))
    return lower, lower + max(roofline_time(k, r) for k in kernels)
