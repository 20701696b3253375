"""Shape-aware efficiency of matmul work: what fraction of the tensor peak a kernel gets.

One rule for GEMMs and fused attention, after how tiled kernels run:
- the output is cut into tiles (`tile_m` x `tile_n`; fused attention: query rows x
  head_dim, looping over the keys as FlashAttention does);
  a library picks a smaller M tile for skinny problems, down to `tile_m_min`, so a
  decode GEMM (M = 1) pads to `tile_m_min` rows, not to `tile_m` (pad efficiency);
- tiles run in waves over the compute units; when there are fewer tiles than units the K
  loop is split (split-K, split-KV) to fill them, at most K / `tile_k` ways; a partial
  last wave idles units (wave quantisation);
- each tile's K loop pays a prologue and epilogue worth `k_overhead` K elements
  (efficiency K / (K + k_overhead) per split); fused attention is exempt: `k_overhead`
  is fitted on GEMMs, and attention's asymptote is its own field;
- a call has a fixed cost independent of M (weight-side setup, operand packing on CPUs)
  worth `m_overhead` rows (efficiency M / (M + m_overhead)); a single row (M = 1) runs
  as a matrix-vector product (the GEMV routines BLAS libraries dispatch to), which has
  no such cost;
- the asymptote is `gemm.efficiency` for GEMMs and `attention_efficiency` for attention.
Every factor lies in (0, 1], so the product does too; each grows with the problem size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dartsim.specs.hardware import ComputeSpec
from dartsim.workload.kernels import MatmulShape

TILE_M_MIN = 16
"""Smallest M tile a library uses for skinny GEMMs: the M of one tensor-core MMA
(mma.m16n8k16 on NVIDIA GPUs since Ampere; CUDA PTX ISA, warp-level matrix shapes)."""


def _m_tile(m: int, tile_m: int) -> int:
    """The M tile a library picks: the smallest power of two covering M, between
    TILE_M_MIN (or `tile_m` if smaller) and `tile_m`."""
    floor = min(TILE_M_MIN, tile_m)
    return min(tile_m, max(floor, 1 << max(0, (m - 1).bit_length())))


@dataclass(frozen=True)
class Tiling:
    """How a matmul problem maps onto the compute units."""

    wave_efficiency: float
    pad_efficiency: float
    k_per_split: float


def tiling(shape: MatmulShape, compute: ComputeSpec) -> Tiling:
    """Tiles, split-K and waves of `shape` on the device (the first two rules above)."""
    g = compute.gemm
    m, n, k = max(1, shape.m), max(1, shape.n), max(1, shape.k)
    tm = _m_tile(m, g.tile_m)
    tn = n if shape.attention else g.tile_n  # a FlashAttention tile spans the whole head_dim
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
    tiles = shape.count * tiles_m * tiles_n
    units = compute.units
    split = 1
    if tiles < units:
        split = max(1, min(units // tiles, math.ceil(k / g.tile_k)))
    work = tiles * split
    waves = math.ceil(work / units)
    return Tiling(
        wave_efficiency=work / (waves * units),
        pad_efficiency=(m * n) / (tiles_m * tm * tiles_n * tn),
        k_per_split=k / split,
    )


def matmul_efficiency(shape: MatmulShape, compute: ComputeSpec) -> float:
    """Fraction of the tensor peak the kernel's matmul work sustains, in (0, 1]."""
    g = compute.gemm
    t = tiling(shape, compute)
    if shape.attention:
        return compute.attention_efficiency * t.wave_efficiency * t.pad_efficiency
    k_eff = t.k_per_split / (t.k_per_split + g.k_overhead)
    m = max(1, shape.m)
    m_eff = 1.0 if m == 1 else m / (m + g.m_overhead)
    return g.efficiency * t.wave_efficiency * t.pad_efficiency * k_eff * m_eff
