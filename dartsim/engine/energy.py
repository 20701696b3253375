"""Energy charged on what the device model counts: DRAM/HBM bytes, their on-chip movement,
tensor FLOPs, link and host bytes, and static power for the time the device is on.

    E = 8 x bytes x (e_dram + e_onchip) + FLOPs x e_tensor[format]
        + 8 x (link bytes x e_link + host bytes x e_host) + P_static x time

Each constant is a band in the hardware file (specs/hardware.py EnergySpec): the nominal
figure and the low and high ends its sources give; an energy is computed three times, with
every constant at its low, nominal and high value, so the band is the widest the sources
allow. The formula is linear in the counts, so energies of parts add up to the energy of
the whole exactly as their bytes, FLOPs and times do. docs/energy.md has every term, its
sources and a worked decode step.
"""

from __future__ import annotations

from dataclasses import dataclass

from dartsim.specs.hardware import EnergySpec
from dartsim.units import BITS_PER_BYTE


@dataclass(frozen=True)
class Counts:
    """What one piece of work moved and computed, and how long it held the device."""

    dram_bytes: int
    flops: int
    time_s: float
    link_bytes: int = 0
    host_bytes: int = 0


@dataclass(frozen=True)
class Energy:
    """Joules: nominal, and the band's low and high ends."""

    j: float
    low_j: float
    high_j: float

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.j + other.j, self.low_j + other.low_j, self.high_j + other.high_j)

    def fields(self, prefix: str = "energy_j") -> dict[str, float]:
        """The JSON fields: `energy_j`, `energy_j_low`, `energy_j_high`."""
        return {prefix: self.j, f"{prefix}_low": self.low_j, f"{prefix}_high": self.high_j}


ZERO = Energy(0.0, 0.0, 0.0)


def _one(spec: EnergySpec, counts: Counts, flop_format: str, end: str) -> float:
    """The energy with every constant at `end` ("", "_low" or "_high")."""

    def value(name: str) -> float:
        return float(getattr(spec, f"{name}{end}"))

    per_flop = getattr(spec, f"tensor_j_per_flop{end}")
    if counts.flops and flop_format not in per_flop:
        from dartsim.errors import UserError

        have = ", ".join(sorted(per_flop))
        raise UserError(f"energy.tensor_pj_per_flop lists no {flop_format} (it lists {have})")
    bits = BITS_PER_BYTE
    return (
        bits * counts.dram_bytes * (value("dram_j_per_bit") + value("onchip_j_per_bit"))
        + counts.flops * (per_flop.get(flop_format, 0.0))
        + bits * counts.link_bytes * value("link_j_per_bit")
        + bits * counts.host_bytes * value("host_link_j_per_bit")
        + value("static_w") * counts.time_s
    )


def energy(spec: EnergySpec, counts: Counts, flop_format: str) -> Energy:
    """The energy of `counts`, its FLOPs on the tensor units in `flop_format` (nominal, low, high)."""
    return Energy(*(_one(spec, counts, flop_format, end) for end in ("", "_low", "_high")))
