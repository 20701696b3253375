"""Time of a tensor-parallel collective on the chip-to-chip links.

time = the library's fixed cost per call (the stack's allreduce.call_us)
       + link latency x hops on the critical path
       + bytes each device sends / (bandwidth its group can use x link efficiency)

The bytes and hops of each algorithm come from the workload model
(workload/collectives.py). The bandwidth a device of a p-wide group can use is the
hardware's (LinkSpec.group_bandwidth_bytes_per_s): all of its links behind a switch,
only the p - 1 links to its group's peers in a full mesh (MI300X: a TP-2 pair has one
64 GB/s link, not seven). Small messages are latency-bound, large ones bandwidth-bound.
"""

from __future__ import annotations

from dartsim.specs.hardware import LinkSpec
from dartsim.specs.stack import StackAllReduce
from dartsim.workload.kernels import Kernel


def collective_time(kernel: Kernel, link: LinkSpec, allreduce: StackAllReduce) -> float:
    """Seconds the kernel's collective occupies the link (0 for other kernels)."""
    c = kernel.collective
    if c is None or c.tp == 1:
        return 0.0
    bandwidth = link.group_bandwidth_bytes_per_s(c.tp) * link.efficiency
    return allreduce.call_s + c.hops * link.latency_s + kernel.link_bytes / bandwidth
