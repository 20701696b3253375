"""Closed-form bounds on a step's time, for cross-checking the discrete-event engine on an
idealised device (no latencies, no launch costs, an unlimited on-chip network)."""

from __future__ import annotations

from collections.abc import Sequence

from dartsim.engine.machine import Device, compute_time
from dartsim.workload.kernels import Kernel


def roofline_time(kernel: Kernel, dev: Device) -> float:
    """The larger of bytes over bandwidth and FLOPs over throughput."""
    return max(kernel.bytes / dev.dram_bytes_per_s, compute_time(kernel, dev))


def serial_time(kernels: Sequence[Kernel], dev: Device) -> float:
    """Kernels one after another, memory and compute overlapping only within a kernel."""
    return sum(roofline_time(k, dev) for k in kernels)


def overlapped_bounds(kernels: Sequence[Kernel], dev: Device) -> tuple[float, float]:
    """(lower, upper) for perfect cross-kernel overlap: the busiest resource's total, and
    that plus the longest single kernel (pipeline fill and drain)."""
    lower = max(
        sum(k.bytes for k in kernels) / dev.dram_bytes_per_s, sum(compute_time(k, dev) for k in kernels)
    )
    return lower, lower + max(roofline_time(k, dev) for k in kernels)
