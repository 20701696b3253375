"""Summed costs of a list of kernels (a block: a prologue, a layer's attention or MLP
half, an epilogue), and the per-layer arrays a step's cost reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dartsim.engine.sim import StepResult
from dartsim.workload.kernels import Component, Kernel

PARTS = ("attention", "mlp")
"""Per-layer split reported by replay; norms and residual adds count towards totals only."""


@dataclass
class Block:
    """Summed costs of a list of kernels: totals, the (attention, mlp) parts, and per part
    the demand of each bound."""

    demand_s: float = 0.0
    bytes: int = 0
    flops: int = 0
    link_bytes: int = 0
    part_bytes: list[int] = field(default_factory=lambda: [0, 0])
    part_flops: list[int] = field(default_factory=lambda: [0, 0])
    part_demand: list[float] = field(default_factory=lambda: [0.0, 0.0])
    part_bounds: list[dict[str, float]] = field(default_factory=lambda: [{}, {}])
    bodies: list[float] = field(default_factory=list)
    """Each kernel's own time once started, in order (for eager launch's closed form)."""

    def add(self, kernel: Kernel, demand: float, bound: str, body: float = 0.0) -> None:
        self.bodies.append(body)
        self.demand_s += demand
        self.bytes += kernel.bytes
        self.flops += kernel.flops
        self.link_bytes += kernel.link_bytes
        if kernel.component in (Component.ATTENTION, Component.MLP):
            j = 0 if kernel.component is Component.ATTENTION else 1
            self.part_bytes[j] += kernel.bytes
            self.part_flops[j] += kernel.flops
            self.part_demand[j] += demand
            tally = self.part_bounds[j]
            tally[bound] = tally.get(bound, 0.0) + demand


def layer_arrays(
    result: StepResult, layers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Per layer and part: bytes, FLOPs, time and bound.

    With weight streaming a kernel's weights load while earlier kernels run, so the time a
    kernel waits says little about what it costs. The step's simulated time is therefore
    apportioned to kernels in proportion to their standalone demand (the largest of their
    resource times plus launch); the shares add up to the step time.
    """
    blocks = [Block() for _ in range(layers)]
    total_demand = 0.0
    for timing in result.timings:
        total_demand += timing.demand_s
        if timing.kernel.layer is not None:
            blocks[timing.kernel.layer].add(timing.kernel, timing.demand_s, timing.bound)
    return block_arrays(blocks, result.time_s / total_demand if total_demand > 0 else 0.0)


def block_arrays(
    blocks: Sequence[Block], scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    b = np.array([blk.part_bytes for blk in blocks], dtype=np.int64)
    f = np.array([blk.part_flops for blk in blocks], dtype=np.int64)
    t = np.array([blk.part_demand for blk in blocks], dtype=np.float64) * scale
    bounds = [
        tuple(max(cell, key=lambda key: cell[key]) if cell else "none" for cell in blk.part_bounds)
        for blk in blocks
    ]
    return b, f, t, bounds  # type: ignore[return-value]
