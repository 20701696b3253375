"""What a step costs (`StepCost`) and the arithmetic on costs that replay at scale relies
on: sums of steps, and the affine interpolation in context, in closed form over a run,
that keeps bytes and FLOPs exact (returning None where they would not be)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class StepCost:
    """What one step costs: totals, and per layer [L, 2] (attention, mlp) arrays."""

    time_s: float
    bytes: int
    flops: int
    link_bytes: int
    layer_bytes: np.ndarray
    layer_flops: np.ndarray
    layer_time: np.ndarray
    layer_bound: list[tuple[str, str]]


def closed_form(a: StepCost, b: StepCost, offsets: np.ndarray, span: int) -> StepCost | None:
    """The sum over steps at `offsets` into a cell of width `span` of the affine
    interpolation between `a` and `b`; None when some step's integer counts would not be
    exact (the per-step path decides then)."""
    n = len(offsets)
    s = int(offsets.sum())
    ints: list[int] = []
    for lo, hi in ((a.bytes, b.bytes), (a.flops, b.flops), (a.link_bytes, b.link_bytes)):
        if (hi - lo) % span and np.any(((hi - lo) * offsets) % span):
            return None
        ints.append(n * lo + (hi - lo) * s // span)
    arrays: list[np.ndarray] = []
    for lo_a, hi_a in ((a.layer_bytes, b.layer_bytes), (a.layer_flops, b.layer_flops)):
        diff = hi_a - lo_a
        if np.any(diff % span) and np.any(np.multiply.outer(offsets, diff) % span):
            return None
        arrays.append(n * lo_a + diff * s // span)
    return StepCost(
        time_s=n * a.time_s + (b.time_s - a.time_s) * s / span,
        bytes=ints[0],
        flops=ints[1],
        link_bytes=ints[2],
        layer_bytes=arrays[0],
        layer_flops=arrays[1],
        layer_time=n * a.layer_time + (b.layer_time - a.layer_time) * s / span,
        layer_bound=a.layer_bound,
    )


def summed(costs: Sequence[StepCost]) -> StepCost:
    first = costs[0]
    return StepCost(
        time_s=sum(c.time_s for c in costs),
        bytes=sum(c.bytes for c in costs),
        flops=sum(c.flops for c in costs),
        link_bytes=sum(c.link_bytes for c in costs),
        layer_bytes=sum((c.layer_bytes for c in costs[1:]), first.layer_bytes.copy()),
        layer_flops=sum((c.layer_flops for c in costs[1:]), first.layer_flops.copy()),
        layer_time=sum((c.layer_time for c in costs[1:]), first.layer_time.copy()),
        layer_bound=first.layer_bound,
    )


def affine_int(a: int, b: int, num: int, den: int) -> int | None:
    value, rest = divmod((b - a) * num, den)
    return None if rest else a + value


def affine_array(a: np.ndarray, b: np.ndarray, num: int, den: int) -> np.ndarray | None:
    scaled = (b - a) * num
    if np.any(scaled % den):
        return None
    return a + scaled // den
