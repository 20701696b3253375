"""Simulating one step on one device with SimPy.

Two processes share the device:
- the weight streamer reads each kernel's weights from DRAM ahead of time into on-chip
  memory (a Container of `sram_bytes`; a kernel's weights beyond that capacity are read by
  the kernel itself), moving them over the on-chip network to the compute tiles;
- the executor runs kernels in order: a launch overhead, waiting for its prefetched
  weights, then its own DRAM traffic (activations, KV cache, weights not prefetched)
  overlapped with its arithmetic, its chip-to-chip all-reduce and any host upload.

DRAM is one resource shared by both processes; a running kernel's demand traffic is served
before queued prefetches (a transfer in progress is never pre-empted). Every byte a kernel moves is counted
once in DRAM events, so the events conserve the workload model's bytes exactly; time is
never below bytes over bandwidth or FLOPs over throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from dartsim.engine.machine import Rates, gather_efficiency
from dartsim.workload.kernels import Kernel, TensorKind

BOUNDS = ("memory", "compute", "network", "link", "host", "launch")
DEMAND_PRIORITY = 0
"""A running kernel's own DRAM traffic goes before queued weight prefetches."""
PREFETCH_PRIORITY = 1


@dataclass(frozen=True)
class KernelCost:
    """The times one kernel needs from each resource, before any queueing (seconds)."""

    weight_bytes: int
    other_bytes: int
    weight_dram_s: float
    other_dram_s: float
    compute_s: float
    noc_s: float
    link_s: float
    host_s: float


def kernel_cost(kernel: Kernel, r: Rates, tp: int) -> KernelCost:
    """Resource times of `kernel` at the device's effective rates."""
    weight_bytes = other_bytes = 0
    weight_s = other_s = 0.0
    for tensor in (*kernel.reads, *kernel.writes):
        size = tensor.bytes
        eff = 1.0 if tensor.row_bytes is None else gather_efficiency(tensor.row_bytes)
        seconds = size / (r.dram_bytes_per_s * eff)
        if tensor.kind is TensorKind.WEIGHT and tensor in kernel.reads:
            weight_bytes += size
            weight_s += seconds
        else:
            other_bytes += size
            other_s += seconds
    compute = 0.0
    if kernel.flops_matmul:
        assert kernel.compute_dtype is not None
        compute = kernel.flops_matmul / r.tensor_rate(kernel.compute_dtype)
    compute = max(compute, kernel.flops_vector / r.vector_flops_per_s)
    noc = (weight_bytes + other_bytes) / r.noc_bytes_per_s
    if weight_bytes + other_bytes:
        noc += r.noc_latency_s
    link = 0.0
    if kernel.link_bytes:
        link = kernel.link_bytes / r.link_bytes_per_s + 2 * (tp - 1) * r.link_latency_s
    host = 0.0
    if kernel.host_bytes:
        from dartsim.engine.machine import HOST_LINK_BYTES_PER_S

        host = kernel.host_bytes / HOST_LINK_BYTES_PER_S
    return KernelCost(weight_bytes, other_bytes, weight_s, other_s, compute, noc, link, host)


@dataclass
class KernelTiming:
    """When a kernel ran: `first_s` is its first activity (the start of its weight
    prefetch, or its launch), `start_s` its launch, `end_s` its completion."""

    kernel: Kernel
    start_s: float
    end_s: float
    bound: str
    first_s: float = 0.0
    demand_s: float = 0.0
    """The kernel's standalone time: the largest of its resource times, plus its launch."""


@dataclass
class Span:
    """One busy interval of a resource, for timelines."""

    track: str
    name: str
    start_s: float
    end_s: float


@dataclass
class StepResult:
    time_s: float
    timings: list[KernelTiming]
    dram_bytes: int = 0
    flops: int = 0
    link_bytes: int = 0
    host_bytes: int = 0
    spans: list[Span] = field(default_factory=list)


def _bound(cost: KernelCost, launch: float, memory_s: float) -> str:
    """The resource that accounts for most of a kernel's own demand (its weights count as
    memory whether streamed ahead or read in the kernel)."""
    parts = {
        "memory": memory_s,
        "compute": cost.compute_s,
        "network": cost.noc_s,
        "link": cost.link_s,
        "host": cost.host_s,
        "launch": launch,
    }
    return max(parts, key=lambda k: parts[k])


def simulate_step(
    kernels: Sequence[Kernel], r: Rates, tp: int = 1, prefetch: bool = True, timeline: bool = False
) -> StepResult:
    """Run one step's kernels through the device model; returns timings and event sums."""
    env = simpy.Environment()
    dram = simpy.PriorityResource(env, capacity=1)  # demand reads before prefetches
    buffer = simpy.Container(env, capacity=max(r.sram_bytes, 1), init=max(r.sram_bytes, 1))
    costs = [kernel_cost(k, r, tp) for k in kernels]
    ready = [env.event() for _ in kernels]
    prefetched = [0] * len(kernels)
    first_activity = [float("inf")] * len(kernels)
    result = StepResult(time_s=0.0, timings=[])
    spans = result.spans

    def streamer():  # type: ignore[no-untyped-def]
        for i, cost in enumerate(costs):
            amount = min(cost.weight_bytes, buffer.capacity) if prefetch else 0
            if amount:
                yield buffer.get(amount)
                share = amount / cost.weight_bytes
                with dram.request(priority=PREFETCH_PRIORITY) as req:
                    yield req
                    start = env.now
                    first_activity[i] = start
                    dram_s = cost.weight_dram_s * share
                    noc_s = amount / r.noc_bytes_per_s + r.noc_latency_s
                    yield env.timeout(max(dram_s + r.dram_latency_s, noc_s))
                    result.dram_bytes += amount
                    if timeline:
                        spans.append(Span("DRAM", f"prefetch {_label(kernels[i])}", start, start + dram_s))
                        spans.append(Span("NoC", f"weights {_label(kernels[i])}", start, start + noc_s))
            prefetched[i] = amount
            ready[i].succeed()

    def executor():  # type: ignore[no-untyped-def]
        for i, (kernel, cost) in enumerate(zip(kernels, costs, strict=True)):
            start = env.now
            if r.launch_s:
                yield env.timeout(r.launch_s)
            yield ready[i]
            begin = env.now
            remaining_weights = cost.weight_bytes - prefetched[i]
            weight_s = (
                cost.weight_dram_s * (remaining_weights / cost.weight_bytes) if cost.weight_bytes else 0.0
            )
            memory_s = cost.other_dram_s + weight_s
            moved = cost.other_bytes + remaining_weights
            if moved:
                with dram.request(priority=DEMAND_PRIORITY) as req:
                    yield req
                    mem_start = env.now
                    yield env.timeout(memory_s + r.dram_latency_s)
                    result.dram_bytes += moved
                    if timeline:
                        spans.append(Span("DRAM", _label(kernel), mem_start, mem_start + memory_s))
            busy = max(cost.compute_s, cost.link_s, cost.host_s, cost.noc_s if moved else 0.0)
            left = begin + busy - env.now
            if left > 0:
                yield env.timeout(left)
            result.flops += kernel.flops
            result.link_bytes += kernel.link_bytes
            result.host_bytes += kernel.host_bytes
            end = env.now
            if timeline:
                unit = "tensor" if kernel.flops_matmul else "vector"
                if cost.compute_s:
                    spans.append(Span(f"compute ({unit})", _label(kernel), begin, begin + cost.compute_s))
                if cost.link_s:
                    spans.append(Span("link", _label(kernel), begin, begin + cost.link_s))
            own_memory = cost.weight_dram_s + cost.other_dram_s
            bound = _bound(cost, r.launch_s, own_memory)
            demand = r.launch_s + max(own_memory, cost.compute_s, cost.noc_s, cost.link_s, cost.host_s)
            result.timings.append(
                KernelTiming(kernel, start, end, bound, min(start, first_activity[i]), demand)
            )
            if prefetched[i]:
                yield buffer.put(prefetched[i])
        result.time_s = env.now

    env.process(streamer())
    env.process(executor())
    env.run()
    return result


def _label(kernel: Kernel) -> str:
    return kernel.name if kernel.layer is None else f"L{kernel.layer}.{kernel.name}"
