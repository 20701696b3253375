"""Shape-aware efficiency of matmul work: what fraction of the tensor peak a kernel gets.

One rule for GEMMs and fused attention, after how tiled kernels run:
- the output is cut into tiles (`tile_m` x `tile_n`; fused attention: query rows x keys);
  a library picks a smaller M tile for skinny problems, down to `tile_m_min`, so a
  decode GEMM (M = 1) pads to `tile_m_min` rows, not to `tile_m` (pad efficiency);
- tiles run in waves over the compute units; when there are fewer tiles than units the K
  loop is split (split-K, split-KV) to fill them, at most K / `tile_k` ways; a partial
  last wave idles units (wave quantisation);
- each tile's K loop pays a prologue and epilogue worth `k_overhead` K elements
  (efficiency K / (K + k_overhead) per split);
- a call has a fixed cost independent of M (weight-side setup, operand packing on CPUs)
  worth `m_overhead` rows (efficiency M / (M + m_overhead));
- the asymptote is `gemm.efficiency` for GEMMs and `attention_efficiency` for attention.
Every factor lies in (0, 1], so the product does too; each grows with the problem size.
"""

from __future__ import annotations

import math

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


def matmul_efficiency(shape: MatmulShape, compute: ComputeSpec) -> float:
    """Fraction of the tensor peak the kernel's matmul work sustains, in (0, 1]."""
    g = compute.gemm
    m, n, k = max(1, shape.m), max(1, shape.n), max(1, shape.k)
    tm = _m_tile(m, g.tile_m)
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / g.tile_n)
    tiles = shape.count * tiles_m * tiles_n
    units = compute.units
    split = 1
    if tiles < units:
        split = max(1, min(units // tiles, math.ceil(k / g.tile_k)))
    work = tiles * split
    waves = math.ceil(work / units)
    wave_eff = work / (waves * units)
    pad_eff = (m * n) / (tiles_m * tm * tiles_n * g.tile_n)
    k_per_split = k / split
    k_eff = k_per_split / (k_per_split + g.k_overhead)
    if shape.attention:
        return compute.attention_efficiency * wave_eff * pad_eff * k_eff
    m_eff = m / (m + g.m_overhead)
    return g.efficiency * wave_eff * pad_eff * k_eff * m_eff
