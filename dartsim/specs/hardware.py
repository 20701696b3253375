"""Hardware specifications, loaded from YAML presets or user files.

YAML fields carry their units in their names (`peak_bandwidth_gb_per_s`, `latency_ns`);
the loader converts them once into the SI fields of the frozen dataclasses below, using
the field table of `hardware_schema`. Loading is strict: an unknown or duplicated key, a
missing key, a value outside its plausible range, an impossible network, or a missing
source is an error naming the file, the field and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dartsim.errors import UserError
from dartsim.specs.dtypes import DType
from dartsim.specs.hardware_fields import FieldReader
from dartsim.specs.hardware_schema import (
    CALIBRATABLE,
    ENERGY_BANDS,
    FIELDS,
    OPTIONAL_SECTIONS,
    REQUIRED,
    REQUIRED_SOURCES,
    SECTIONS,
    TOP_KEYS,
)
from dartsim.specs.presets import calibrated_fields, preset_names, read_named
from dartsim.units import TFLOP

PRESET_FOLDER = "hw_presets"
RING_MIN_TILES = 4
"""A bidirectional ring's bisection is four links only from four tiles on."""


@dataclass(frozen=True)
class MemorySpec:
    type: str
    capacity_bytes: int
    peak_bandwidth_bytes_per_s: float
    channels: int
    efficiency: float
    latency_s: float
    """Load-to-use latency: delays the first byte of a transfer, occupies nothing."""
    burst_bytes: int
    """Smallest transfer; gathered rows round up to whole bursts."""
    row_miss_overhead_bytes: int
    """Bandwidth lost when a gathered row starts at a new place, as equivalent bytes."""

    @property
    def achievable_bandwidth_bytes_per_s(self) -> float:
        return self.peak_bandwidth_bytes_per_s * self.efficiency


@dataclass(frozen=True)
class GemmSpec:
    """How a GEMM's output tiles map onto the compute units (see engine/efficiency.py)."""

    tile_m: int
    tile_n: int
    tile_k: int
    efficiency: float
    """Fraction of the tensor peak a large GEMM sustains (the asymptote)."""
    k_overhead: float
    """A tile's prologue and epilogue, in equivalent K elements."""
    m_overhead: float
    """A call's fixed cost independent of M (operand packing, weight-side setup), in rows."""


@dataclass(frozen=True)
class ComputeSpec:
    units: int
    clock_hz: float
    tensor_flops_per_s: dict[str, float]
    vector_flops_per_s: float
    vector_efficiency: float
    gemm: GemmSpec
    tensor_sparse_2to4_flops_per_s: dict[str, float] | None = None
    """Tensor peaks with 2:4 structured sparsity, where the device has them (its own field:
    the dense peaks stay the figures every other kernel uses)."""


@dataclass(frozen=True)
class OnChipSpec:
    sram_bytes: int
    weight_prefetch: bool
    """Whether a streamer loads the next kernels' weights into on-chip memory ahead of
    time (a DMA engine); on GPUs the L2 is a cache filled by the running kernel."""


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
    """What one device can send over all its chip-to-chip links together."""
    efficiency: float
    """Fraction of the per-direction bandwidth a collective sustains."""
    latency_s: float
    """Per hop of a collective."""
    topology: str
    """switch, full_mesh or pcie (hardware_schema.LINK_TOPOLOGIES)."""
    per_peer_bandwidth_bytes_per_s: float | None
    """full_mesh: the bandwidth of the one link to each peer (None: the device's whole)."""
    max_devices: int
    """Devices one tensor-parallel group may span (those a node connects this way)."""

    def group_bandwidth_bytes_per_s(self, devices: int) -> float:
        """Per-direction bandwidth one device of a `devices`-wide group can use: all of it
        behind a switch or over PCIe; in a full mesh only the links to its group's peers."""
        if self.topology != "full_mesh" or self.per_peer_bandwidth_bytes_per_s is None:
            return self.bandwidth_bytes_per_s_per_direction
        return min(
            self.bandwidth_bytes_per_s_per_direction, (devices - 1) * self.per_peer_bandwidth_bytes_per_s
        )


@dataclass(frozen=True)
class HostLinkSpec:
    type: str
    bandwidth_bytes_per_s_per_direction: float
    latency_s: float


@dataclass(frozen=True)
class EnergySpec:
    """Energy per event, each as (nominal, low, high): joules per bit of DRAM traffic, of
    its on-chip movement, per bit sent over the chip-to-chip and host links, per tensor
    FLOP by format, and the static watts drawn for the whole time the device is on; the
    board's power limit. Presets cite each value and its range (docs/energy.md)."""

    dram_j_per_bit: float
    dram_j_per_bit_low: float
    dram_j_per_bit_high: float
    onchip_j_per_bit: float
    onchip_j_per_bit_low: float
    onchip_j_per_bit_high: float
    link_j_per_bit: float
    link_j_per_bit_low: float
    link_j_per_bit_high: float
    host_link_j_per_bit: float
    host_link_j_per_bit_low: float
    host_link_j_per_bit_high: float
    tensor_j_per_flop: dict[str, float]
    tensor_j_per_flop_low: dict[str, float]
    tensor_j_per_flop_high: dict[str, float]
    static_w: float
    static_w_low: float
    static_w_high: float
    board_power_w: float

    def band(self, name: str) -> tuple[Any, Any, Any]:
        """(nominal, low, high) of one constant (`dram_j_per_bit`, `tensor_j_per_flop`...)."""
        return getattr(self, name), getattr(self, f"{name}_low"), getattr(self, f"{name}_high")


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator: memory, compute, on-chip memory and network, links. What the
    software does on it is a StackSpec (specs/stack.py)."""

    name: str
    description: str
    default_stack: str
    """The software stack a replay uses unless told otherwise (a preset name)."""
    memory: MemorySpec
    compute: ComputeSpec
    on_chip: OnChipSpec
    noc: NocSpec
    link: LinkSpec
    host_link: HostLinkSpec
    sources: dict[str, str]
    calibrated: tuple[str, ...]
    """YAML paths of the fields a fit to measurements may change."""
    defaults: tuple[str, ...]
    """YAML paths of the fields the file left out (their defaults apply)."""
    source_file: str
    energy: EnergySpec | None = None
    """None where the file has no `energy` section (then no energy figures are given)."""

    def has_tensor_dtype(self, dtype: DType) -> bool:
        return dtype.name in self.compute.tensor_flops_per_s

    def sparse_2to4_flops_per_s(self, dtype: DType) -> float | None:
        """The 2:4 sparse tensor peak for `dtype`, or None where the file lists none."""
        table = self.compute.tensor_sparse_2to4_flops_per_s
        return None if table is None else table.get(dtype.name)

    def tensor_flops_per_s(self, dtype: DType, option: str = "") -> float:
        """Dense tensor-unit peak for `dtype`; a format the device lacks is a user error
        (naming the option that asked for it, when given)."""
        try:
            return self.compute.tensor_flops_per_s[dtype.name]
        except KeyError:
            have = ", ".join(sorted(self.compute.tensor_flops_per_s))
            asked = f" ({option} asks for it)" if option else ""
            raise UserError(
                f"{self.source_file}: hardware {self.name!r} has no {dtype.name} tensor "
                f"throughput{asked}; compute.tensor_dense_tflop_per_s lists {have}: choose another "
                "precision or device"
            ) from None


_CLASSES: dict[str, type] = {
    "memory": MemorySpec,
    "compute": ComputeSpec,
    "compute.gemm": GemmSpec,
    "on_chip": OnChipSpec,
    "noc": NocSpec,
    "link": LinkSpec,
    "host_link": HostLinkSpec,
}


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def put_sources(data: dict[str, Any], sources: dict[str, str], sections: tuple[str, ...]) -> None:
    """Write sources back beside their fields: a section's as `section.source`, a field's
    as `section.<field>_source` (what `hw show` and `stack show` print)."""
    for key, text in sources.items():
        if key in sections:
            set_dotted(data, f"{key}.source", text)
        else:
            section, _, leaf = key.rpartition(".")
            set_dotted(data, f"{section}.{leaf}_source", text)


def get_dotted(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part] if isinstance(tree, dict) else getattr(tree, part)
    return tree


def hardware_spec_from_dict(raw: Any, where: str) -> HardwareSpec:
    """Validate a parsed hardware YAML document and convert it to SI."""
    r = FieldReader(where)
    top = r.mapping(raw, "")
    r.check_keys(top, set(TOP_KEYS), "")
    present = tuple(s for s in OPTIONAL_SECTIONS if s in top)
    docs, sources = r.sections_and_sources(top, SECTIONS + present, FIELDS, REQUIRED_SOURCES)
    values: dict[str, Any] = {}
    defaults = []
    for field in FIELDS:
        if field.section in OPTIONAL_SECTIONS:
            if field.section not in present:
                values[field.attr] = None
                continue
            if field.key not in docs[field.section]:
                raise UserError(
                    f"{where}: missing key {field.path!r} (an energy section gives every constant)"
                )
        doc = docs[field.section]
        if field.key in doc:
            values[field.attr] = r.leaf(field, doc[field.key])
        elif field.default is REQUIRED:
            raise UserError(f"{where}: missing key {field.path!r}")
        else:
            if field.default is not None:
                defaults.append(field.path)
            default = field.default
            values[field.attr] = default * field.scale if isinstance(default, float) else default
    _check_noc(r, values)
    _check_link(r, values)
    _check_sparse_peaks(r, values)
    energy = _energy(r, values) if "energy" in present else None
    calibrated = calibrated_fields(r, top.get("calibrated", []), CALIBRATABLE)

    tree: dict[str, Any] = {}
    for attr, value in values.items():
        set_dotted(tree, attr, value)
    tree["memory"]["capacity_bytes"] = round(tree["memory"]["capacity_bytes"])
    tree["on_chip"]["sram_bytes"] = round(tree["on_chip"]["sram_bytes"])
    tree["compute"]["gemm"] = GemmSpec(**tree["compute"]["gemm"])
    built = {section: cls(**tree[section]) for section, cls in _CLASSES.items() if "." not in section}
    return HardwareSpec(
        energy=energy,
        name=tree["name"],
        description=tree["description"],
        default_stack=tree["default_stack"],
        **built,
        sources=sources,
        calibrated=calibrated,
        defaults=tuple(defaults),
        source_file=where,
    )


def _energy(r: FieldReader, values: dict[str, Any]) -> EnergySpec:
    """The energy section, each band ordered low <= nominal <= high (per format for the
    tensor table, which lists the same formats in all three)."""
    for key, attr, kind in ENERGY_BANDS:
        mid, low, high = (values[f"energy.{attr}{s}"] for s in ("", "_low", "_high"))
        if kind == "rates":
            if not set(mid) == set(low) == set(high):
                raise r.fail(f"energy.{key}", "and its _low and _high tables must list the same formats")
            pairs = [(f"{key}.{name}", low[name], mid[name], high[name]) for name in sorted(mid)]
        else:
            pairs = [(key, low, mid, high)]
        for path, lo, nominal, hi in pairs:
            if not lo <= nominal <= hi:
                raise r.fail(f"energy.{path}", f"must lie within its _low and _high values, got {lo:g} <= "
                             f"{nominal:g} <= {hi:g} (SI)")  # fmt: skip
    fields = {
        attr.removeprefix("energy."): value for attr, value in values.items() if attr.startswith("energy.")
    }
    return EnergySpec(**fields)


def _check_sparse_peaks(r: FieldReader, values: dict[str, Any]) -> None:
    """A 2:4 peak is the same unit skipping half its work: below the dense peak it would make
    the path that replaces dense slower than dense (and nothing says so)."""
    sparse = values["compute.tensor_sparse_2to4_flops_per_s"] or {}
    dense = values["compute.tensor_flops_per_s"]
    for name, peak in sorted(sparse.items()):
        if name in dense and peak < dense[name]:
            raise r.fail(
                f"compute.tensor_sparse_2to4_tflop_per_s.{name}",
                f"is below the dense peak compute.tensor_dense_tflop_per_s.{name} "
                f"({peak / TFLOP:g} < {dense[name] / TFLOP:g} TFLOP/s): a 2:4 peak is at least the dense one",
            )


def _check_noc(r: FieldReader, values: dict[str, Any]) -> None:
    topology, tiles = values["noc.topology"], values["noc.tiles"]
    rows, cols = values["noc.mesh_rows"], values["noc.mesh_cols"]
    if tiles == 1 and topology != "crossbar":
        raise r.fail(
            "noc.topology", f"is {topology!r} for one tile: one tile has no network (use crossbar, one port)"
        )
    if topology == "ring" and tiles < RING_MIN_TILES:
        raise r.fail(
            "noc.tiles",
            f"is {tiles} for a ring: the ring's bisection of four links (engine/machine.py) needs at least "
            f"{RING_MIN_TILES} tiles",
        )
    if topology == "mesh":
        if rows is None or cols is None:
            raise r.fail("noc.mesh_rows", "and noc.mesh_cols are required for a mesh")
        if rows * cols != tiles:
            raise r.fail(
                "noc.mesh_rows",
                f"x noc.mesh_cols = {rows} x {cols} = {rows * cols} does not match noc.tiles = {tiles}",
            )
    elif rows is not None or cols is not None:
        raise r.fail("noc.mesh_rows", f"applies only to a mesh, topology is {topology!r}")


def _check_link(r: FieldReader, values: dict[str, Any]) -> None:
    per_peer = values["link.per_peer_bandwidth_bytes_per_s"]
    if values["link.topology"] == "full_mesh" and per_peer is None:
        raise r.fail("link.per_peer_bandwidth_gb_per_s", "is required for a full_mesh link topology")
    if per_peer is not None and values["link.topology"] != "full_mesh":
        raise r.fail(
            "link.per_peer_bandwidth_gb_per_s",
            f"applies only to a full_mesh, topology is {values['link.topology']!r}",
        )
    if per_peer is not None and per_peer > values["link.bandwidth_bytes_per_s_per_direction"]:
        raise r.fail(
            "link.per_peer_bandwidth_gb_per_s",
            "exceeds link.bandwidth_gb_per_s_per_direction (the device's whole)",
        )


def hardware_preset_names() -> list[str]:
    return preset_names(PRESET_FOLDER)


def load_hardware_spec(name_or_path: str) -> HardwareSpec:
    """A preset name (`l40s`) or a path to a hardware YAML file."""
    return hardware_spec_from_dict(*read_named(name_or_path, PRESET_FOLDER, "hardware"))
