"""Time of a tensor-parallel collective on the chip-to-chip links.

time = the library's fixed cost per call + link latency x hops on the critical path
       + bytes each device sends / (link bandwidth per direction x link efficiency)

The bytes and hops of each algorithm come from the workload model
(workload/collectives.py); the fixed cost (`link.allreduce_call_us`) and the per-hop
latency (`link.latency_us`) are preset fields with their sources. Small messages are
latency-bound (the fixed cost dominates), large ones bandwidth-bound.
"""

from __future__ import annotations

from dartsim.specs.hardware import LinkSpec
from dartsim.workload.kernels import Kernel


def collective_time(kernel: Kernel, link: LinkSpec) -> float:
    """Seconds the kernel's collective occupies the link (0 for other kernels)."""
    c = kernel.collective
    if c is None or c.tp == 1:
        return 0.0
    bandwidth = link.bandwidth_bytes_per_s_per_direction * link.efficiency
    return link.allreduce_call_s + c.hops * link.latency_s + kernel.link_bytes / bandwidth
