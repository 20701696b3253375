"""Shape-aware efficiency of matmul work: what fraction of the tensor peak a kernel gets.

One rule for GEMMs and fused attention, after how tiled kernels run:
- the output is cut into tiles (fused attention: query rows x head_dim, looping over the
  keys as FlashAttention does). A skinny problem (M below `tile_m`) uses the smallest
  power-of-two M tile covering it, down to TILE_M_MIN, so a decode GEMM (M = 1) pads to
  16 rows, not to `tile_m`; a larger problem picks the better of the `tile_m` x `tile_n`
  tile and the half-height, double-width tile of the same area (libraries ship both:
  CUTLASS 128x128 and 64x256 on Hopper), so M = 160 pads to 192 rows, not 256;
- tiles run in waves over the compute units. When there are fewer tiles than units the
  K loop is split (split-K, split-KV) to fill them, at most K / `tile_k` ways. When a
  last partial wave is less than half full and each tile has more than
  STREAM_K_MIN_K_TILES K tiles, stream-K spreads the last two waves' K iterations evenly
  over all units, paying a partial-sum fixup per split tile (CUTLASS's SM90 stream-K
  scheduler heuristic); otherwise the partial wave idles units (wave quantisation);
- each tile's K loop pays a prologue and epilogue worth `k_overhead` K elements
  (efficiency K / (K + k_overhead) per split; a stream-K split tile pays a fixup on top,
  STREAM_K_FIXUP_SHARE of it); fused
  attention is exempt: `k_overhead` is fitted on GEMMs, and attention's asymptote is the
  software stack's (attention.prefill_efficiency);
- a call has a fixed cost independent of M (weight-side setup, operand packing on CPUs)
  worth `m_overhead` rows (efficiency M / (M + m_overhead)); a single row (M = 1) runs
  as a matrix-vector product (the GEMV routines BLAS libraries dispatch to), which has
  no such cost;
- the asymptote is `gemm.efficiency` for GEMMs, the stack's for attention.
Every factor lies in (0, 1], so the product does too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dartsim.specs.hardware import ComputeSpec
from dartsim.workload.kernels import MatmulShape

TILE_M_MIN = 16
"""Smallest M tile a library uses for skinny GEMMs: the M of one tensor-core MMA
(mma.m16n8k16 on NVIDIA GPUs since Ampere; CUDA PTX ISA, warp-level matrix shapes)."""
STREAM_K_TAIL_FRACTION = 0.5
"""Stream-K is used only when the last wave is less than half full: "prefer data-parallel
decomposition if we have more than one wave and the tail wave is more than half full"
(NVIDIA/cutlass include/cutlass/gemm/kernel/tile_scheduler_params.h, SM90 stream-K)."""
STREAM_K_MIN_K_TILES = 8
"""...and only when a tile has more K tiles than this to split ("min_iters_per_sk_unit_ =
8u", same file)."""
STREAM_K_FIXUP_SHARE = 0.5
"""What a stream-K split tile's partial-sum fixup costs, as a share of the prologue and
epilogue that `k_overhead` stands for: one more epilogue (its partials stored and read
back), half of the pair (assumption; the Stream-K paper's per-scheme costs were not found)."""
STREAM_K_WAVES = 2
"""Stream-K covers the tiles of the last two waves ("assign the first two waves worth of
tiles to be covered by stream-K work and the remainder to be data-parallel", same file;
with fewer than two waves, all of them)."""


def _m_tiles(m: int, tile_m: int) -> tuple[int, ...]:
    """Candidate M tiles: for a skinny problem the smallest power of two covering M,
    between TILE_M_MIN (or `tile_m` if smaller) and `tile_m`; otherwise `tile_m` and its
    half (the same tile area, twice as wide)."""
    floor = min(TILE_M_MIN, tile_m)
    if m < tile_m:
        return (min(tile_m, max(floor, 1 << max(0, (m - 1).bit_length()))),)
    return (tile_m, tile_m // 2) if tile_m // 2 >= floor else (tile_m,)


@dataclass(frozen=True)
class Tiling:
    """How a matmul problem maps onto the compute units."""

    wave_efficiency: float
    pad_efficiency: float
    k_per_split: float
    k_overhead_scale: float = 1.0
    """How many K-loop prologues and epilogues a split pays on average (stream-K split
    tiles pay one more, for their partial-sum fixup)."""

    def k_efficiency(self, k_overhead: float) -> float:
        return self.k_per_split / (self.k_per_split + k_overhead * self.k_overhead_scale)


def _one_tiling(shape: MatmulShape, compute: ComputeSpec, tm: int, tn: int) -> Tiling:
    g = compute.gemm
    m, n, k = max(1, shape.m), max(1, shape.n), max(1, shape.k)
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
    tiles = shape.count * tiles_m * tiles_n
    pad = (m * n) / (tiles_m * tm * tiles_n * tn)
    units = compute.units
    k_tiles = math.ceil(k / g.tile_k)
    if tiles < units:  # split-K (split-KV) to fill the units
        split = max(1, min(units // tiles, k_tiles))
        work = tiles * split
        return Tiling(work / (math.ceil(work / units) * units), pad, k / split)
    waves = math.ceil(tiles / units)
    tail = tiles - (waves - 1) * units
    data_parallel = Tiling(tiles / (waves * units), pad, float(k))
    full_tail = tail == units or tail >= STREAM_K_TAIL_FRACTION * units
    if full_tail or k_tiles <= STREAM_K_MIN_K_TILES or shape.attention:
        return data_parallel
    sk_tiles = min(tiles, tail + (STREAM_K_WAVES - 1) * units)
    iterations = sk_tiles * k_tiles  # spread evenly over all units
    sk_time = math.ceil(iterations / units) / k_tiles  # in tile-times
    dp_time = (tiles - sk_tiles) / units
    wave = tiles / (units * (dp_time + sk_time))
    return Tiling(min(1.0, wave), pad, float(k), 1.0 + STREAM_K_FIXUP_SHARE * sk_tiles / tiles)


def tiling(shape: MatmulShape, compute: ComputeSpec) -> Tiling:
    """Tiles, split-K / stream-K and waves of `shape` on the device (the rules above): of
    the candidate tiles, the one that keeps the most of the peak."""
    g = compute.gemm
    k_overhead = 0.0 if shape.attention else g.k_overhead
    best: Tiling | None = None
    for tm in _m_tiles(max(1, shape.m), g.tile_m):
        if shape.attention:  # a FlashAttention tile spans the whole head_dim
            tn = max(1, shape.n)
        else:  # the same tile area: a half-height tile is twice as wide
            tn = g.tile_n * max(1, g.tile_m // tm) if shape.m >= g.tile_m else g.tile_n
        t = _one_tiling(shape, compute, tm, tn)
        if best is None or _score(t, k_overhead) > _score(best, k_overhead):
            best = t
    assert best is not None
    return best


def _score(t: Tiling, k_overhead: float) -> float:
    return t.wave_efficiency * t.pad_efficiency * t.k_efficiency(k_overhead)


def matmul_efficiency(shape: MatmulShape, compute: ComputeSpec, attention_efficiency: float = 1.0) -> float:
    """Fraction of the tensor peak the kernel's matmul work sustains, in (0, 1];
    `attention_efficiency` is the asymptote of fused attention (the stack's)."""
    g = compute.gemm
    t = tiling(shape, compute)
    if shape.attention:
        return attention_efficiency * t.wave_efficiency * t.pad_efficiency
    m = max(1, shape.m)
    m_eff = 1.0 if m == 1 else m / (m + g.m_overhead)
    return g.efficiency * t.wave_efficiency * t.pad_efficiency * t.k_efficiency(g.k_overhead) * m_eff
