"""The hardware file schema: every field once, with its unit, plausible range and default.

Hardware holds what the silicon does (datasheets, microbenchmarks); how the software
launches kernels, runs collectives and attention, and schedules prefills is the software
stack's (specs/stack_schema.py), so those keys are refused here with a pointer there.

A field's YAML name carries its unit (`latency_ns`); `scale` converts it to SI on
loading and back on writing, so the rest of dartsim sees seconds, bytes and FLOP/s only.
Ranges are deliberately wide: they exist to stop nonsense (a 10^300 GB memory, a negative
latency), not to second-guess a design study, and each says why it stops where it does.
Fields with a default may be left out of a user's file; `dartsim hw show` prints the
value used and marks it as the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dartsim.units import GB, MB, MHZ, NS, PJ, TFLOP, US

TENSOR_DTYPES = ("fp8", "fp16", "bf16", "fp32", "int8")
"""Formats a tensor unit may list; `fp32` means the TF32 tensor-core path."""
NOC_TOPOLOGIES = ("crossbar", "ring", "mesh")
LINK_TOPOLOGIES = ("switch", "full_mesh", "pcie")
"""switch: every pair of devices at the device's full link bandwidth (NVSwitch); full_mesh:
a direct link to each peer, so a group of p devices uses p - 1 of them (MI300X's xGMI);
pcie: through PCIe, no peer links."""

REQUIRED = object()
"""Marker: the field has no default."""

_HUGE = "far beyond any device built or planned"


@dataclass(frozen=True)
class Field:
    """One leaf of the hardware document."""

    path: str
    """Dotted YAML path, e.g. `memory.latency_ns`."""
    attr: str
    """Dotted attribute path on HardwareSpec, e.g. `memory.latency_s`."""
    kind: str
    """text, number, integer, fraction, flag, choice, rates (a format -> number map)."""
    scale: float = 1.0
    """Multiplier from the YAML unit to SI."""
    low: float | None = None
    high: float | None = None
    why: str = ""
    """Why the range stops where it does (printed with a range error)."""
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    low_open: bool = True
    """Whether `low` itself is excluded (positive quantities) or allowed (zero latencies)."""

    @property
    def section(self) -> str:
        return self.path.rsplit(".", 1)[0] if "." in self.path else ""

    @property
    def key(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def _num(path: str, attr: str, scale: float, high: float, why: str = _HUGE, **kw: Any) -> Field:
    return Field(path, attr, "number", scale, 0.0, high, why, **kw)


def _zero_ok(path: str, attr: str, scale: float, high: float, why: str = _HUGE, **kw: Any) -> Field:
    return Field(path, attr, "number", scale, 0.0, high, why, low_open=False, **kw)


def _int(path: str, attr: str, high: float, why: str = _HUGE, **kw: Any) -> Field:
    return Field(path, attr, "integer", 1.0, 1, high, why, low_open=False, **kw)


def _frac(path: str, attr: str, **kw: Any) -> Field:
    return Field(path, attr, "fraction", 1.0, 0.0, 1.0, "an efficiency factor lies in (0, 1]", **kw)


FIELDS: tuple[Field, ...] = (
    Field("name", "name", "text"),
    Field("description", "description", "text"),
    Field("default_stack", "default_stack", "text", default="vllm"),
    # memory
    Field("memory.type", "memory.type", "text"),
    _num("memory.capacity_gb", "memory.capacity_bytes", GB, 1e5),
    _num("memory.peak_bandwidth_gb_per_s", "memory.peak_bandwidth_bytes_per_s", GB, 1e5),
    _int("memory.channels", "memory.channels", 4096),
    _frac("memory.efficiency", "memory.efficiency"),
    _zero_ok("memory.latency_ns", "memory.latency_s", NS, 1e5, "a memory access starts within microseconds"),
    _int("memory.burst_bytes", "memory.burst_bytes", 4096, "a DRAM burst is tens of bytes", default=64),
    Field(
        "memory.row_miss_overhead_bytes",
        "memory.row_miss_overhead_bytes",
        "integer",
        1.0,
        0,
        65536,
        "a row miss costs at most a few bursts",
        default=64,
        low_open=False,
    ),
    # compute
    _int("compute.units", "compute.units", 1e6),
    _num("compute.clock_mhz", "compute.clock_hz", MHZ, 1e5),
    Field("compute.tensor_dense_tflop_per_s", "compute.tensor_flops_per_s", "rates", TFLOP, 0.0, 1e6, _HUGE),
    Field(
        "compute.tensor_sparse_2to4_tflop_per_s",
        "compute.tensor_sparse_2to4_flops_per_s",
        "rates",
        TFLOP,
        0.0,
        1e6,
        _HUGE,
        default=None,
    ),
    _num("compute.vector_tflop_per_s", "compute.vector_flops_per_s", TFLOP, 1e6),
    _frac("compute.vector_efficiency", "compute.vector_efficiency", default=1.0),
    _int("compute.gemm.tile_m", "compute.gemm.tile_m", 4096, "output tiles are at most a few hundred rows"),
    _int(
        "compute.gemm.tile_n", "compute.gemm.tile_n", 4096, "output tiles are at most a few hundred columns"
    ),
    _int("compute.gemm.tile_k", "compute.gemm.tile_k", 4096, "a K step is at most a few hundred elements"),
    _frac("compute.gemm.efficiency", "compute.gemm.efficiency"),
    _zero_ok(
        "compute.gemm.k_overhead",
        "compute.gemm.k_overhead",
        1.0,
        1e6,
        "a tile's prologue is worth at most a few thousand K elements",
        default=0.0,
    ),
    _zero_ok(
        "compute.gemm.m_overhead",
        "compute.gemm.m_overhead",
        1.0,
        1e6,
        "a call's fixed cost is worth at most a few thousand rows",
        default=0.0,
    ),
    # on-chip memory
    _num("on_chip.sram_mb", "on_chip.sram_bytes", MB, 1e6),
    Field("on_chip.weight_prefetch", "on_chip.weight_prefetch", "flag"),
    # on-chip network
    Field("noc.topology", "noc.topology", "choice", choices=NOC_TOPOLOGIES),
    _int("noc.tiles", "noc.tiles", 1e6),
    _int("noc.mesh_rows", "noc.mesh_rows", 1e6, default=None),
    _int("noc.mesh_cols", "noc.mesh_cols", 1e6, default=None),
    _num("noc.link_bandwidth_gb_per_s", "noc.link_bandwidth_bytes_per_s", GB, 1e6),
    _zero_ok("noc.hop_latency_ns", "noc.hop_latency_s", NS, 1e6, "an on-chip hop takes nanoseconds"),
    # chip-to-chip link and collectives
    Field("link.type", "link.type", "text"),
    _num("link.bandwidth_gb_per_s_per_direction", "link.bandwidth_bytes_per_s_per_direction", GB, 1e5),
    _frac("link.efficiency", "link.efficiency", default=1.0),
    _zero_ok("link.latency_us", "link.latency_s", US, 1e4, "a link hop takes microseconds"),
    Field("link.topology", "link.topology", "choice", choices=LINK_TOPOLOGIES, default="switch"),
    _num(
        "link.per_peer_bandwidth_gb_per_s",
        "link.per_peer_bandwidth_bytes_per_s",
        GB,
        1e5,
        default=None,
    ),
    _int(
        "link.max_devices", "link.max_devices", 4096, "a node holds at most thousands of devices", default=8
    ),
    # host link
    Field("host_link.type", "host_link.type", "text"),
    _num(
        "host_link.bandwidth_gb_per_s_per_direction",
        "host_link.bandwidth_bytes_per_s_per_direction",
        GB,
        1e4,
    ),
    _zero_ok(
        "host_link.latency_us", "host_link.latency_s", US, 1e4, "a host transfer starts in microseconds"
    ),
)

ENERGY_BANDS = (
    ("dram_pj_per_bit", "dram_j_per_bit", "number"),
    ("onchip_pj_per_bit", "onchip_j_per_bit", "number"),
    ("link_pj_per_bit", "link_j_per_bit", "number"),
    ("host_link_pj_per_bit", "host_link_j_per_bit", "number"),
    ("tensor_pj_per_flop", "tensor_j_per_flop", "rates"),
    ("static_w", "static_w", "number"),
)
"""Energy constants, each a band: `NAME` (nominal), `NAME_low`, `NAME_high` (the range the
sources give). dram: per bit of DRAM/HBM traffic (activation, movement and I/O together);
onchip: per bit of that traffic between on-chip memory and the compute units; link and
host_link: per bit sent; tensor: per FLOP of a tensor-unit matmul, by format; static: watts
drawn whatever the work, for the whole time the device is on."""
_ENERGY_HIGH = {"number": 1e4, "rates": 1e4}
_ENERGY_WHY = "a per-bit or per-FLOP energy is a few picojoules, a board's static draw hundreds of watts"


def _energy_fields() -> tuple[Field, ...]:
    out = []
    for key, attr, kind in ENERGY_BANDS:
        scale = 1.0 if key.endswith("_w") else PJ
        for suffix in ("", "_low", "_high"):
            out.append(
                Field(f"energy.{key}{suffix}", f"energy.{attr}{suffix}", kind, scale, 0.0,
                      _ENERGY_HIGH[kind], _ENERGY_WHY, default=None)
            )  # fmt: skip
    out.append(_num("energy.board_power_w", "energy.board_power_w", 1.0, 1e5, default=None))
    return tuple(out)


FIELDS = FIELDS + _energy_fields()

SECTIONS = ("memory", "compute", "compute.gemm", "on_chip", "noc", "link", "host_link")
OPTIONAL_SECTIONS = ("energy",)
"""Sections a file may leave out (a hardware file without `energy` gives no energy figures);
given, every field in it is required."""
REQUIRED_SOURCES = ("memory.efficiency",)
"""Fields that must cite their own source beside their section's (`<field>_source`)."""
TOP_KEYS = (
    "name",
    "description",
    "default_stack",
    "calibrated",
    *[s for s in SECTIONS if "." not in s],
    *OPTIONAL_SECTIONS,
)
_MOVED = "moved to the software stack file (dartsim stack list; docs/engine.md, 'The software stack')"
RETIRED_KEYS = {
    "launch_overhead_us": f"the launch costs are {_MOVED}",
    "launch_overhead_source": f"the launch costs are {_MOVED}",
    "launch": f"the launch section is {_MOVED}",
    "attention_efficiency": f"attention kernel efficiency is {_MOVED}",
    "attention_efficiency_source": f"attention kernel efficiency is {_MOVED}",
    "allreduce_algorithm": f"the all-reduce implementation is {_MOVED}",
    "allreduce_algorithm_source": f"the all-reduce implementation is {_MOVED}",
    "allreduce_call_us": f"the all-reduce implementation is {_MOVED}",
    "allreduce_call_us_source": f"the all-reduce implementation is {_MOVED}",
    "one_shot_max_kb": f"the all-reduce implementation is {_MOVED}",
    "one_shot_max_kb_source": f"the all-reduce implementation is {_MOVED}",
}

CALIBRATABLE = tuple(f.path for f in FIELDS if f.kind in ("number", "fraction", "rates"))
"""Fields a fit may change (those a preset lists under `calibrated`)."""
