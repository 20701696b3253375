"""Effective rates of one device, derived from its HardwareSpec, and the first-order
network model (crossbar, ring, 2D mesh)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dartsim.specs.dtypes import DType
from dartsim.specs.hardware import HardwareSpec

DRAM_ACCESS_GRANULARITY_BYTES = 64
"""Smallest DRAM transfer: a 64-byte burst (two 32-byte sectors on NVIDIA GPUs, one HBM
burst of 64 B). Gathered rows are rounded up to it."""
GATHER_ROW_OVERHEAD_BYTES = 64
"""Extra cost of starting a new randomly placed row, expressed as equivalent bytes (about
one burst of lost bandwidth for the row-buffer miss). Assumption, not measured."""
HOST_LINK_BYTES_PER_S = 32e9
"""Host-to-device upload rate for masks: PCIe Gen4 x16, 32 GB/s per direction
(shared/reference/hardware.md)."""


@dataclass(frozen=True)
class Rates:
    """What the engine needs per device, in SI units."""

    dram_bytes_per_s: float
    dram_latency_s: float
    tensor_flops_per_s: dict[str, float]
    vector_flops_per_s: float
    noc_bytes_per_s: float
    noc_latency_s: float
    link_bytes_per_s: float
    link_latency_s: float
    launch_s: float
    sram_bytes: int

    def tensor_rate(self, dtype: DType) -> float:
        return self.tensor_flops_per_s[dtype.name]


def noc_capacity(hw: HardwareSpec) -> tuple[float, float]:
    """(bytes/s, latency s) of the on-chip network for traffic from the memory
    controllers at its edge to the compute tiles.

    crossbar: every tile has its own port; bandwidth tiles x link, one hop.
    ring: bidirectional, the bisection (four links) limits; average tiles/4 hops.
    mesh: memory controllers on two opposite edges, the bisection of 2 x min(rows, cols)
    links limits; average (rows + cols) / 3 hops.
    """
    noc = hw.noc
    link = noc.link_bandwidth_bytes_per_s
    if noc.topology == "crossbar":
        return noc.tiles * link, noc.hop_latency_s
    if noc.topology == "ring":
        return 4 * link, noc.hop_latency_s * max(1.0, noc.tiles / 4)
    rows, cols = noc.mesh_rows or 1, noc.mesh_cols or 1
    return 2 * min(rows, cols) * link, noc.hop_latency_s * (rows + cols) / 3


def rates(hw: HardwareSpec) -> Rates:
    noc_bw, noc_lat = noc_capacity(hw)
    eff = hw.compute.efficiency
    return Rates(
        dram_bytes_per_s=hw.memory.achievable_bandwidth_bytes_per_s,
        dram_latency_s=hw.memory.latency_s,
        tensor_flops_per_s={k: v * eff for k, v in hw.compute.tensor_flops_per_s.items()},
        vector_flops_per_s=hw.compute.vector_flops_per_s * eff,
        noc_bytes_per_s=noc_bw,
        noc_latency_s=noc_lat,
        link_bytes_per_s=hw.link.bandwidth_bytes_per_s_per_direction,
        link_latency_s=hw.link.latency_s,
        launch_s=hw.launch_overhead_s,
        sram_bytes=hw.on_chip.sram_bytes,
    )


def gather_efficiency(row_bytes: int) -> float:
    """Fraction of DRAM bandwidth left when reading rows of `row_bytes` at random places:
    each row rounds up to whole bursts and pays one row-start overhead."""
    bursts = math.ceil(row_bytes / DRAM_ACCESS_GRANULARITY_BYTES) * DRAM_ACCESS_GRANULARITY_BYTES
    return row_bytes / (bursts + GATHER_ROW_OVERHEAD_BYTES)
