"""Units, named once.

Inside dartsim every quantity is SI: bytes, FLOP, seconds, bytes per second, FLOP per
second. Conversions happen only at the edges (YAML in, reports out), through the
constants here, so that GB (1e9) and GiB (2^30) can never be confused.
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 10**3
MB = 10**6
GB = 10**9
GiB = 2**30

TFLOP = 10**12
TiFLOP = 2**40
"""2^40 FLOP. The DART paper's Table 7 prints FLOP counts in this unit under the label
"TFLOPS"; dartsim names it honestly."""

MHZ = 10**6

NS = 1e-9
US = 1e-6
MS = 1e-3
"""Seconds per nanosecond, microsecond, millisecond: `x_us * US` is seconds."""
NS_PER_S = 10**9
US_PER_S = 10**6
MS_PER_S = 10**3
"""Their inverses, exact: `seconds * MS_PER_S` is milliseconds (multiplying by an exact
integer gives the same bits as the literal 1e3; dividing by MS would not)."""

BITS_PER_BYTE = 8

PJ = 1e-12
"""Joules per picojoule: `x_pj_per_bit * PJ` is joules per bit."""


@dataclass(frozen=True)
class UnitSystem:
    """How a report scales bytes and FLOP counts, and the labels it prints."""

    name: str
    bytes_scale: int
    bytes_label: str
    flops_scale: int
    flops_label: str


BINARY = UnitSystem("binary", GiB, "GiB", TiFLOP, "TiFLOP (2^40 FLOP)")
DECIMAL = UnitSystem("decimal", GB, "GB", TFLOP, "TFLOP (1e12 FLOP)")
UNIT_SYSTEMS: dict[str, UnitSystem] = {u.name: u for u in (BINARY, DECIMAL)}


def format_seconds(seconds: float) -> str:
    """A duration with an SI prefix chosen for readability (s, ms, us, ns)."""
    magnitude = abs(seconds)
    if magnitude >= 1 or magnitude == 0:
        return f"{seconds:.3f} s"
    if magnitude >= MS:
        return f"{seconds / MS:.3f} ms"
    if magnitude >= US:
        return f"{seconds / US:.3f} us"
    return f"{seconds / NS:.3f} ns"
