"""Hardware specifications, loaded from YAML presets or user files.

YAML fields carry their units in their names (`peak_bandwidth_gb_per_s`, `latency_ns`);
the loader converts them once into the SI fields of the frozen dataclasses below. Loading
is strict: an unknown key, a missing key, a zero or negative figure, an impossible
network, or a missing source is an error naming the file, the field and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dartsim.errors import UserError, unknown_name
from dartsim.fileio import read_text
from dartsim.specs.dtypes import DType
from dartsim.units import GB, MB, MHZ, NS, TFLOP, US

TENSOR_DTYPES = ("fp8", "fp16", "bf16", "fp32", "int8")
"""Formats a tensor unit may list; `fp32` means the TF32 tensor-core path."""
NOC_TOPOLOGIES = ("crossbar", "ring", "mesh")
PRESET_PACKAGE = "dartsim.specs"
PRESET_FOLDER = "hw_presets"


@dataclass(frozen=True)
class MemorySpec:
    type: str
    capacity_bytes: int
    peak_bandwidth_bytes_per_s: float
    channels: int
    efficiency: float
    latency_s: float

    @property
    def achievable_bandwidth_bytes_per_s(self) -> float:
        return self.peak_bandwidth_bytes_per_s * self.efficiency


@dataclass(frozen=True)
class ComputeSpec:
    units: int
    clock_hz: float
    tensor_flops_per_s: dict[str, float]
    vector_flops_per_s: float
    efficiency: float


@dataclass(frozen=True)
class OnChipSpec:
    sram_bytes: int


@dataclass(frozen=True)
class NocSpec:
    topology: str
    tiles: int
    mesh_rows: int | None
    mesh_cols: int | None
    link_bandwidth_bytes_per_s: float
    hop_latency_s: float


@dataclass(frozen=True)
class LinkSpec:
    type: str
    bandwidth_bytes_per_s_per_direction: float
    latency_s: float


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator: memory, compute, on-chip memory and network, chip-to-chip link."""

    name: str
    description: str
    memory: MemorySpec
    compute: ComputeSpec
    on_chip: OnChipSpec
    noc: NocSpec
    link: LinkSpec
    launch_overhead_s: float
    sources: dict[str, str]
    source_file: str

    def has_tensor_dtype(self, dtype: DType) -> bool:
        return dtype.name in self.compute.tensor_flops_per_s

    def tensor_flops_per_s(self, dtype: DType) -> float:
        """Dense tensor-unit peak for `dtype`; a format the device lacks is a user error."""
        try:
            return self.compute.tensor_flops_per_s[dtype.name]
        except KeyError:
            have = ", ".join(sorted(self.compute.tensor_flops_per_s))
            raise UserError(
                f"{self.source_file}: hardware {self.name!r} has no {dtype.name} tensor "
                f"throughput (compute.tensor_dense_tflop_per_s lists {have}); choose another "
                "precision or device"
            ) from None


# -- schema -----------------------------------------------------------------------------

_SECTION_KEYS: dict[str, dict[str, bool]] = {
    # key -> required
    "memory": {
        "type": True,
        "capacity_gb": True,
        "peak_bandwidth_gb_per_s": True,
        "channels": True,
        "efficiency": True,
        "latency_ns": True,
        "source": True,
        "efficiency_source": True,
    },
    "compute": {
        "units": True,
        "clock_mhz": True,
        "tensor_dense_tflop_per_s": True,
        "vector_tflop_per_s": True,
        "efficiency": True,
        "source": True,
        "efficiency_source": True,
    },
    "on_chip": {"sram_mb": True, "source": True},
    "noc": {
        "topology": True,
        "tiles": True,
        "mesh_rows": False,
        "mesh_cols": False,
        "link_bandwidth_gb_per_s": True,
        "hop_latency_ns": True,
        "source": True,
    },
    "link": {
        "type": True,
        "bandwidth_gb_per_s_per_direction": True,
        "latency_us": True,
        "source": True,
    },
}
_TOP_KEYS = {
    "name": True,
    "description": True,
    "launch_overhead_us": True,
    "launch_overhead_source": True,
    **{section: True for section in _SECTION_KEYS},
}


class _Reader:
    """Validates one parsed YAML document, naming the file and dotted field on errors."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, message: str) -> UserError:
        return UserError(f"{self.where}: field {field!r} {message}")

    def check_keys(self, mapping: Any, allowed: dict[str, bool], prefix: str) -> dict[str, Any]:
        label = prefix or "top level"
        if not isinstance(mapping, dict):
            raise UserError(f"{self.where}: {label} must be a mapping, got {mapping!r}")
        for key in mapping:
            if key not in allowed:
                raise UserError(
                    f"{self.where}: unknown key {prefix + str(key)!r} (allowed: {', '.join(sorted(allowed))})"
                )
        for key, required in allowed.items():
            if required and key not in mapping:
                raise UserError(f"{self.where}: missing key {prefix + key!r}")
        return mapping

    def text(self, mapping: dict[str, Any], key: str, field: str) -> str:
        value = mapping[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"must be a non-empty string, got {value!r}")
        return value

    def positive(self, mapping: dict[str, Any], key: str, field: str) -> float:
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(field, f"must be positive and finite, got {value!r}")
        return float(value)

    def non_negative(self, mapping: dict[str, Any], key: str, field: str) -> float:
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise self.fail(field, f"must be zero or positive and finite, got {value!r}")
        return float(value)

    def count(self, mapping: dict[str, Any], key: str, field: str) -> int:
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(field, f"must be a positive integer, got {value!r}")
        return value

    def fraction(self, mapping: dict[str, Any], key: str, field: str) -> float:
        value = self.positive(mapping, key, field)
        if value > 1:
            raise self.fail(field, f"is an efficiency factor and must lie in (0, 1], got {value!r}")
        return value


def hardware_spec_from_dict(raw: Any, where: str) -> HardwareSpec:
    """Validate a parsed hardware YAML document and convert it to SI."""
    r = _Reader(where)
    top = r.check_keys(raw, _TOP_KEYS, "")
    sections = {s: r.check_keys(top[s], keys, f"{s}.") for s, keys in _SECTION_KEYS.items()}

    mem = sections["memory"]
    memory = MemorySpec(
        type=r.text(mem, "type", "memory.type"),
        capacity_bytes=round(r.positive(mem, "capacity_gb", "memory.capacity_gb") * GB),
        peak_bandwidth_bytes_per_s=r.positive(
            mem, "peak_bandwidth_gb_per_s", "memory.peak_bandwidth_gb_per_s"
        )
        * GB,
        channels=r.count(mem, "channels", "memory.channels"),
        efficiency=r.fraction(mem, "efficiency", "memory.efficiency"),
        latency_s=r.non_negative(mem, "latency_ns", "memory.latency_ns") * NS,
    )

    comp = sections["compute"]
    tensor_raw = comp["tensor_dense_tflop_per_s"]
    r.check_keys(tensor_raw, dict.fromkeys(TENSOR_DTYPES, False), "compute.tensor_dense_tflop_per_s.")
    if not tensor_raw:
        raise r.fail("compute.tensor_dense_tflop_per_s", "must list at least one format")
    tensor = {
        name: r.positive(tensor_raw, name, f"compute.tensor_dense_tflop_per_s.{name}") * TFLOP
        for name in TENSOR_DTYPES
        if name in tensor_raw
    }
    compute = ComputeSpec(
        units=r.count(comp, "units", "compute.units"),
        clock_hz=r.positive(comp, "clock_mhz", "compute.clock_mhz") * MHZ,
        tensor_flops_per_s=tensor,
        vector_flops_per_s=r.positive(comp, "vector_tflop_per_s", "compute.vector_tflop_per_s") * TFLOP,
        efficiency=r.fraction(comp, "efficiency", "compute.efficiency"),
    )

    on_chip = OnChipSpec(sram_bytes=round(r.positive(sections["on_chip"], "sram_mb", "on_chip.sram_mb") * MB))

    noc_raw = sections["noc"]
    topology = r.text(noc_raw, "topology", "noc.topology")
    if topology not in NOC_TOPOLOGIES:
        raise r.fail("noc.topology", f"must be one of {', '.join(NOC_TOPOLOGIES)}, got {topology!r}")
    tiles = r.count(noc_raw, "tiles", "noc.tiles")
    rows = noc_raw.get("mesh_rows")
    cols = noc_raw.get("mesh_cols")
    if topology == "mesh":
        if rows is None or cols is None:
            raise r.fail("noc.mesh_rows", "and noc.mesh_cols are required for a mesh")
        rows = r.count(noc_raw, "mesh_rows", "noc.mesh_rows")
        cols = r.count(noc_raw, "mesh_cols", "noc.mesh_cols")
        if rows * cols != tiles:
            raise r.fail(
                "noc.mesh_rows",
                f"x noc.mesh_cols = {rows} x {cols} = {rows * cols} does not match noc.tiles = {tiles}",
            )
    elif rows is not None or cols is not None:
        raise r.fail("noc.mesh_rows", f"applies only to a mesh, topology is {topology!r}")
    noc = NocSpec(
        topology=topology,
        tiles=tiles,
        mesh_rows=rows,
        mesh_cols=cols,
        link_bandwidth_bytes_per_s=r.positive(
            noc_raw, "link_bandwidth_gb_per_s", "noc.link_bandwidth_gb_per_s"
        )
        * GB,
        hop_latency_s=r.non_negative(noc_raw, "hop_latency_ns", "noc.hop_latency_ns") * NS,
    )

    lnk = sections["link"]
    link = LinkSpec(
        type=r.text(lnk, "type", "link.type"),
        bandwidth_bytes_per_s_per_direction=r.positive(
            lnk, "bandwidth_gb_per_s_per_direction", "link.bandwidth_gb_per_s_per_direction"
        )
        * GB,
        latency_s=r.non_negative(lnk, "latency_us", "link.latency_us") * US,
    )

    sources = {"launch_overhead": r.text(top, "launch_overhead_source", "launch_overhead_source")}
    for section, values in sections.items():
        sources[section] = r.text(values, "source", f"{section}.source")
        if "efficiency_source" in values:
            sources[f"{section}.efficiency"] = r.text(
                values, "efficiency_source", f"{section}.efficiency_source"
            )
    return HardwareSpec(
        name=r.text(top, "name", "name"),
        description=r.text(top, "description", "description"),
        memory=memory,
        compute=compute,
        on_chip=on_chip,
        noc=noc,
        link=link,
        launch_overhead_s=r.non_negative(top, "launch_overhead_us", "launch_overhead_us") * US,
        sources=sources,
        source_file=where,
    )


def _preset_dir() -> Path:
    return Path(str(resources.files(PRESET_PACKAGE).joinpath(PRESET_FOLDER)))


def hardware_preset_names() -> list[str]:
    return sorted(p.stem for p in _preset_dir().glob("*.yaml"))


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into one-line user errors."""
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{path}: malformed YAML{line}: {problem}") from None


def load_hardware_spec(name_or_path: str) -> HardwareSpec:
    """A preset name (`l40s`) or a path to a hardware YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return hardware_spec_from_dict(read_yaml(candidate), str(candidate))
    key = name_or_path.lower()
    names = hardware_preset_names()
    if key not in names:
        raise unknown_name("hardware", name_or_path, names)
    path = _preset_dir() / f"{key}.yaml"
    return hardware_spec_from_dict(read_yaml(path), str(path))


def _edge(value: float) -> float:
    """An SI value converted back to a YAML unit, without binary-fraction noise."""
    return float(f"{value:.12g}")


def hardware_to_yaml_dict(hw: HardwareSpec) -> dict[str, Any]:
    """The spec in the YAML field names and units (what `dartsim hw show` prints)."""
    data = _to_yaml_units(hw)
    for section in ("memory", "compute", "on_chip", "noc", "link"):
        for key, value in data[section].items():
            if isinstance(value, float):
                data[section][key] = _edge(value)
    tensor = data["compute"]["tensor_dense_tflop_per_s"]
    data["compute"]["tensor_dense_tflop_per_s"] = {k: _edge(v) for k, v in tensor.items()}
    data["launch_overhead_us"] = _edge(data["launch_overhead_us"])
    return data


def _to_yaml_units(hw: HardwareSpec) -> dict[str, Any]:
    return {
        "name": hw.name,
        "description": hw.description,
        "memory": {
            "type": hw.memory.type,
            "capacity_gb": hw.memory.capacity_bytes / GB,
            "peak_bandwidth_gb_per_s": hw.memory.peak_bandwidth_bytes_per_s / GB,
            "channels": hw.memory.channels,
            "efficiency": hw.memory.efficiency,
            "latency_ns": hw.memory.latency_s / NS,
        },
        "compute": {
            "units": hw.compute.units,
            "clock_mhz": hw.compute.clock_hz / MHZ,
            "tensor_dense_tflop_per_s": {k: v / TFLOP for k, v in hw.compute.tensor_flops_per_s.items()},
            "vector_tflop_per_s": hw.compute.vector_flops_per_s / TFLOP,
            "efficiency": hw.compute.efficiency,
        },
        "on_chip": {"sram_mb": hw.on_chip.sram_bytes / MB},
        "noc": {
            "topology": hw.noc.topology,
            "tiles": hw.noc.tiles,
            "mesh_rows": hw.noc.mesh_rows,
            "mesh_cols": hw.noc.mesh_cols,
            "link_bandwidth_gb_per_s": hw.noc.link_bandwidth_bytes_per_s / GB,
            "hop_latency_ns": hw.noc.hop_latency_s / NS,
        },
        "link": {
            "type": hw.link.type,
            "bandwidth_gb_per_s_per_direction": hw.link.bandwidth_bytes_per_s_per_direction / GB,
            "latency_us": hw.link.latency_s / US,
        },
        "launch_overhead_us": hw.launch_overhead_s / US,
        "sources": dict(hw.sources),
    }
