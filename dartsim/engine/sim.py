"""Simulating one step on one device.

The executor runs the step's kernels in order, one at a time (one stream). Kernel i
starts when it has been issued and the previous kernel has ended plus the device-side
gap between kernels, under the software stack's launch rules (engine/launch.py: graph,
eager, synchronous; a stack's graphs may cover decode steps only).
A running kernel moves its bytes through the memory path (DRAM and on-chip network as one
pipeline; latency delays the data without occupying the path), computes on the tensor
and vector units, and waits for its collective on the link or its host upload; these
overlap, so it ends when the slowest is done.

With weight prefetch (a streamer; `on_chip.weight_prefetch` or --prefetch), a second
process loads every kernel's weights ahead of time into on-chip memory, in chunks of at
most a quarter of it, in kernel order, as far ahead as the free space allows. A chunk's
space is freed once its kernel is running and the chunk has arrived (the kernel consumes
it as it streams in), so a kernel whose weights exceed the on-chip memory streams through
it. A running kernel's own traffic pre-empts a prefetch in progress, which resumes with
its remaining bytes afterwards (memory controllers serve demand requests first and
interleave at burst granularity). So a kernel's data never arrives later than without the
streamer, and prefetch never slows a step.

Without prefetch nothing runs concurrently with the executor, so the same rules are
evaluated directly, without SimPy (`simulate_step(..., force_events=True)` runs them
through SimPy; a test checks both agree). Every byte is counted once in the events, so
the events conserve the workload model's bytes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from dartsim.engine.launch import Launch
from dartsim.engine.machine import Device, KernelCost, body_time, kernel_cost
from dartsim.units import MB
from dartsim.workload.kernels import Kernel

DEMAND_PRIORITY = 0
"""A running kernel's own DRAM traffic pre-empts weight prefetches."""
PREFETCH_PRIORITY = 1
CHUNKS_PER_BUFFER = 4
"""Prefetch chunks are at most a quarter of the on-chip memory, so that streaming
continues while earlier chunks are held (double buffering with margin)."""
MAX_CHUNKS_PER_KERNEL = 1 << 16
"""Most prefetch chunks one kernel's weights are cut into: an on-chip memory so small that a
kernel needs more is refused (the event count, and the time to simulate, stay bounded; the
shipped mesh study's 0.25 MB buffer cuts a 1 GB kernel into about 17,000)."""


@dataclass
class KernelTiming:
    """When a kernel ran: `first_s` is its first activity (the start of its weight
    prefetch, or its start), `start_s` its start on the device, `end_s` its completion."""

    kernel: Kernel
    start_s: float
    end_s: float
    bound: str
    first_s: float = 0.0
    demand_s: float = 0.0
    """The kernel's standalone time: its launch overhead plus the largest of its resource
    times (what it would take alone)."""


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


def launch_for(dev: Device, phase: str) -> Launch:
    return Launch(dev.stack, dev.launch_mode, phase)


def _standalone(cost: KernelCost, dev: Device, launch: Launch) -> tuple[float, str]:
    """(standalone seconds, bound) of one kernel."""
    moved = cost.weight_bytes + cost.other_bytes
    memory = cost.dram_s + dev.memory_latency_s if moved else 0.0
    network = cost.noc_s + dev.memory_latency_s if moved else 0.0
    parts = {
        "memory": memory,
        "compute": cost.compute_s,
        "network": network,
        "link": cost.link_s,
        "host": cost.host_s,
    }
    body = body_time(cost, dev)
    overhead = launch.overhead(body)
    parts["launch"] = overhead
    return body + overhead, max(parts, key=lambda k: parts[k])


def simulate_step(
    kernels: Sequence[Kernel],
    dev: Device,
    prefetch: bool | None = None,
    timeline: bool = False,
    force_events: bool = False,
    phase: str = "decode",
) -> StepResult:
    """Run one step's kernels through the device model; returns timings and event sums.
    `prefetch` overrides the device's weight streaming; `phase` decides whether the
    stack's graphs cover the step."""
    costs = costed(kernels, dev, phase=phase)
    stream = dev.prefetch if prefetch is None else prefetch
    if stream or force_events:
        return _simulate_events(kernels, costs, dev, stream, timeline, phase)
    return _simulate_serial(kernels, costs, dev, timeline, phase)


def _signature(kernel: Kernel) -> tuple[object, ...]:
    """Everything that decides a kernel's cost (its layer does not)."""
    k = kernel
    return (k.name, k.flops_matmul, k.flops_vector, k.compute_dtype, k.reads, k.writes,
            k.link_bytes, k.host_bytes, k.shape, k.collective)  # fmt: skip


def costed(
    kernels: Sequence[Kernel],
    dev: Device,
    memo: dict[tuple[object, ...], tuple[KernelCost, float, str]] | None = None,
    phase: str = "decode",
) -> list[tuple[KernelCost, float, str]]:
    """Every kernel's cost, standalone time and bound. Kernels that differ only in their
    layer cost the same, so each distinct one is costed once (and once for good when a
    `memo` is passed for the same device)."""
    launch = launch_for(dev, phase)
    cache = {} if memo is None else memo
    out = []
    for kernel in kernels:
        key = (launch.graph, *_signature(kernel))
        entry = cache.get(key)
        if entry is None:
            cost = kernel_cost(kernel, dev)
            entry = cache[key] = (cost, *_standalone(cost, dev, launch))
        out.append(entry)
    return out


def _finish(result: StepResult, kernel: Kernel) -> None:
    result.flops += kernel.flops
    result.link_bytes += kernel.link_bytes
    result.host_bytes += kernel.host_bytes


def _spans(spans: list[Span], kernel: Kernel, cost: KernelCost, begin: float, prev_end: float) -> None:
    label = _label(kernel)
    if begin > prev_end:
        spans.append(Span("launch", label, prev_end, begin))
    if cost.compute_s:
        unit = "tensor" if kernel.flops_matmul else "vector"
        spans.append(Span(f"compute ({unit})", label, begin, begin + cost.compute_s))
    if cost.link_s:
        spans.append(Span("link", label, begin, begin + cost.link_s))
    if cost.host_s:
        spans.append(Span("host link", label, begin, begin + cost.host_s))


def _simulate_serial(
    kernels: Sequence[Kernel],
    costs: list[tuple[KernelCost, float, str]],
    dev: Device,
    timeline: bool,
    phase: str,
) -> StepResult:
    """No streamer: kernels one after another, each with the memory path to itself."""
    result = StepResult(time_s=0.0, timings=[])
    launch = launch_for(dev, phase)
    prev_end = 0.0
    for i, (kernel, (cost, demand, bound)) in enumerate(zip(kernels, costs, strict=True)):
        start = launch.start(i, prev_end)
        moved = cost.weight_bytes + cost.other_bytes
        data_done = start
        if moved:
            occupancy = cost.memory_path_s
            data_done = start + occupancy + dev.memory_latency_s
            result.dram_bytes += moved
            if timeline:
                result.spans.append(Span("DRAM", _label(kernel), start, start + occupancy))
        end = max(start + max(cost.compute_s, cost.link_s, cost.host_s), data_done) + cost.fixed_s
        if timeline:
            _spans(result.spans, kernel, cost, start, prev_end)
        _finish(result, kernel)
        result.timings.append(KernelTiming(kernel, start, end, bound, start, demand))
        prev_end = end
    result.time_s = prev_end
    return result


def _simulate_events(
    kernels: Sequence[Kernel],
    entries: list[tuple[KernelCost, float, str]],
    dev: Device,
    prefetch: bool,
    timeline: bool,
    phase: str,
) -> StepResult:
    costs = [entry[0] for entry in entries]
    env = simpy.Environment()
    dram = simpy.PreemptiveResource(env, capacity=1)
    capacity = max(dev.sram_bytes, 1)
    buffer = simpy.Container(env, capacity=capacity, init=capacity)
    chunk_limit = max(1, capacity // CHUNKS_PER_BUFFER)
    streamed = [prefetch and c.weight_bytes > 0 for c in costs]
    largest = max((c.weight_bytes for c, s in zip(costs, streamed, strict=True) if s), default=0)
    if math.ceil(largest / chunk_limit) > MAX_CHUNKS_PER_KERNEL:
        from dartsim.errors import UserError

        need = math.ceil(largest / MAX_CHUNKS_PER_KERNEL) * CHUNKS_PER_BUFFER
        raise UserError(
            f"on-chip memory of {capacity} bytes is too small to stream weights through: a kernel's "
            f"{largest} weight bytes would take over {MAX_CHUNKS_PER_KERNEL} prefetch chunks (give "
            f"on_chip.sram_mb at least {need / MB:.3g}, or run without --prefetch)"
        )
    arrived = [env.event() for _ in kernels]
    arrival = [0.0] * len(kernels)
    first = [math.inf] * len(kernels)
    held = [0] * len(kernels)
    started = [False] * len(kernels)
    latency = dev.memory_latency_s
    result = StepResult(time_s=0.0, timings=[])
    spans = result.spans

    def streamer():
        for i, cost in enumerate(costs):
            if not streamed[i]:
                continue
            total = cost.weight_bytes
            path_s = max(cost.weight_dram_s, cost.weight_noc_s)
            pieces = math.ceil(total / chunk_limit)
            base, extra = divmod(total, pieces)
            for j in range(pieces):
                size = base + (1 if j < extra else 0)
                yield buffer.get(size)
                remaining = path_s * size / total
                while remaining > 0:
                    with dram.request(priority=PREFETCH_PRIORITY, preempt=False) as req:
                        yield req
                        begin = env.now
                        first[i] = min(first[i], begin)
                        try:
                            yield env.timeout(remaining)
                            remaining = 0.0
                        except simpy.Interrupt:
                            remaining -= env.now - begin
                        if timeline:
                            spans.append(Span("DRAM", f"prefetch {_label(kernels[i])}", begin, env.now))
                result.dram_bytes += size
                arrival[i] = env.now + latency
                if started[i]:
                    buffer.put(size)
                else:
                    held[i] += size
            arrived[i].succeed()

    def executor():
        launch = launch_for(dev, phase)
        prev_end = 0.0
        for i, (kernel, cost) in enumerate(zip(kernels, costs, strict=True)):
            start = launch.start(i, prev_end)
            if start > env.now:
                yield env.timeout(start - env.now)
            started[i] = True
            if held[i]:
                buffer.put(held[i])
                held[i] = 0
            if streamed[i]:
                moved, occupancy = cost.other_bytes, max(cost.other_dram_s, cost.other_noc_s)
            else:
                moved, occupancy = cost.weight_bytes + cost.other_bytes, cost.memory_path_s
            data_done = start
            if moved:
                with dram.request(priority=DEMAND_PRIORITY, preempt=True) as req:
                    yield req
                    begin = env.now
                    yield env.timeout(occupancy)
                result.dram_bytes += moved
                data_done = env.now + latency
                if timeline:
                    spans.append(Span("DRAM", _label(kernel), begin, env.now))
            if streamed[i]:
                yield arrived[i]
                data_done = max(data_done, arrival[i])
            end = max(start + max(cost.compute_s, cost.link_s, cost.host_s), data_done) + cost.fixed_s
            if end > env.now:
                yield env.timeout(end - env.now)
            if timeline:
                _spans(spans, kernel, cost, start, prev_end)
            _finish(result, kernel)
            _, demand, bound = entries[i]
            result.timings.append(KernelTiming(kernel, start, end, bound, min(start, first[i]), demand))
            prev_end = end
        result.time_s = prev_end

    if prefetch:
        env.process(streamer())
    env.process(executor())
    env.run()
    return result


def _label(kernel: Kernel) -> str:
    return kernel.name if kernel.layer is None else f"L{kernel.layer}.{kernel.name}"
