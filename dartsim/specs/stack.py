"""Software-stack specifications (StackSpec), loaded from YAML presets or user files.

A stack is what the serving software does, apart from what the silicon does (the hardware
file): launch costs, per-step host work, the all-reduce implementation, kernel fusion,
attention kernels, prefill scheduling and the memory the framework keeps. Fields carry
their units in their YAML names and are converted to SI once, here (stack_schema.py).

A field fitted on one device's measurements lives under `devices: {DEVICE: {field: value}}`
with its own source; `for_device` applies them, so the stack a replay uses on an H100 may
differ in a fitted constant from the one on an A100, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec, get_dotted, put_sources, set_dotted
from dartsim.specs.hardware_fields import FieldReader
from dartsim.specs.hardware_schema import REQUIRED
from dartsim.specs.presets import calibrated_fields, preset_names, read_named
from dartsim.specs.stack_schema import (
    ATTENTION_FORMATS,
    CALIBRATABLE,
    FIELDS,
    REQUIRED_SOURCES,
    SECTIONS,
    TOP_KEYS,
)
from dartsim.text import brief

PRESET_FOLDER = "stack_presets"


@dataclass(frozen=True)
class StackLaunch:
    mode: str
    """graph: a step's kernels replay from a captured graph; eager: the host issues each."""
    host_issue_s: float
    """Host time to issue one kernel (eager; in graph mode the steps the graph does not
    cover, such as prefills without `prefill_graphs`)."""
    kernel_gap_s: float
    """Device-side gap between the end of one kernel and the start of the next (a graph
    node's cost, or a stream's back-to-back gap)."""
    graph_launch_s: float
    """Host time to launch one captured graph (graph mode, once per step it covers)."""
    step_overhead_s: float
    """Host work every step serialises with: scheduling, preparing inputs, sampling the
    previous token."""
    synchronous: bool
    """The host waits for each kernel before issuing the next (a CPU running its own work)."""
    prefill_graphs: bool
    """Graph mode covers prefill steps too (most stacks capture decode steps only)."""
    ops_per_kernel: float
    """Kernels (operations) the framework runs per kernel of dartsim's kernel model, each
    paying the host issue and the gap between kernels (1 where the model counts the
    stack's kernels; more where it runs extra small kernels: reformatting, quantisation,
    plugin pre- and post-processing, or unfused eager operations)."""


@dataclass(frozen=True)
class StackAllReduce:
    algorithm: str
    call_s: float
    """The library's fixed cost per collective call (launch, peer synchronisation)."""
    one_shot_max_bytes: float


@dataclass(frozen=True)
class StackFusion:
    qkv: bool
    """q, k and v projections as one GEMM."""
    gate_up: str
    """How gate, up and SwiGLU run (stack_schema.GATE_UP_LAYOUTS)."""
    norm_residual: bool
    """each residual add runs inside the next RMSNorm kernel."""
    activation_quant: bool
    """FP8 GEMM inputs are quantised inside the preceding kernel (False: a separate
    quantisation kernel before every FP8 GEMM)."""
    down_layout: str
    """W_down's layout (neuron-major or input-major: stack_schema.DOWN_LAYOUTS)."""


@dataclass(frozen=True)
class StackAttention:
    family: str
    prefill_efficiency: dict[str, float]
    """Fraction of the tensor peak a prefill attention kernel sustains, per compute format."""
    fp8_compute: bool
    """With an FP8 KV cache the kernels compute in FP8 (False: they dequantise and compute
    at the activation format)."""
    decode_bandwidth_efficiency: float
    """Fraction of the device's achievable memory bandwidth a decode attention kernel
    streams the KV cache at, on long contexts."""
    gqa_efficiency: float
    """Further factor on it when query heads share KV heads (1 for GQA-aware kernels)."""
    decode_fixed_s: float
    """Fixed time of a decode attention kernel (split-KV merge, prologue), independent of
    the context: what makes short contexts stream below the asymptote."""

    def prefill_efficiency_for(self, dtype: str) -> float:
        table = self.prefill_efficiency
        if dtype in table:
            return table[dtype]
        return table.get("bf16", table.get("fp16", min(table.values())))


@dataclass(frozen=True)
class StackPrefill:
    scheduling: str
    chunk_tokens: int | None
    request_overhead_s: float
    """Host time per request before its prefill (tokenisation, HTTP handling: client-side
    measurements include it)."""


@dataclass(frozen=True)
class StackMemory:
    reserve_fraction: float
    """Share of device memory not available to weights and KV cache (the framework's own
    buffers, activations, a utilisation cap such as vLLM's 0.9)."""


@dataclass(frozen=True)
class StackSpec:
    """One software stack, as it runs on one device (`for_device` applied)."""

    name: str
    description: str
    launch: StackLaunch
    allreduce: StackAllReduce
    fusion: StackFusion
    attention: StackAttention
    prefill: StackPrefill
    memory: StackMemory
    sources: dict[str, str]
    calibrated: tuple[str, ...]
    devices: dict[str, dict[str, float]]
    """Per device, fitted values of calibrated fields (YAML paths and units)."""
    source_file: str
    device: str | None = None
    """The device whose fitted values are applied (None: the file's own values)."""

    def for_device(self, device: str) -> StackSpec:
        """The stack with `device`'s fitted values (unchanged where it has none)."""
        fitted = self.devices.get(device)
        if not fitted:
            return replace(self, device=None)
        note = f"fitted for {device} ({self.sources.get(f'devices.{device}', '')})"
        return replace(override_stack(self, dict(fitted), note), device=device)

    @property
    def label(self) -> str:
        """The name, and the device whose fitted constants apply."""
        return self.name if self.device is None else f"{self.name} (fitted on {self.device})"


_CLASSES: dict[str, type] = {
    "launch": StackLaunch,
    "allreduce": StackAllReduce,
    "fusion": StackFusion,
    "attention": StackAttention,
    "prefill": StackPrefill,
    "memory": StackMemory,
}


def _fractions(r: FieldReader, raw: Any, path: str) -> dict[str, float]:
    table = r.mapping(raw, path)
    r.check_keys(table, set(ATTENTION_FORMATS), path + ".")
    if not table:
        raise r.fail(path, "must list at least one format")
    out = {}
    for name in ATTENTION_FORMATS:
        if name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise r.fail(
                    f"{path}.{name}", f"is an efficiency factor and must lie in (0, 1], got {brief(value)}"
                )
            out[name] = float(value)
    return out


def stack_spec_from_dict(raw: Any, where: str) -> StackSpec:
    """Validate a parsed stack YAML document and convert it to SI."""
    r = FieldReader(where)
    top = r.mapping(raw, "")
    r.check_keys(top, set(TOP_KEYS), "")
    docs, sources = r.sections_and_sources(top, SECTIONS, FIELDS, REQUIRED_SOURCES)
    values: dict[str, Any] = {}
    for field in FIELDS:
        doc = docs[field.section]
        if field.key in doc:
            values[field.attr] = (
                _fractions(r, doc[field.key], field.path)
                if field.kind == "fractions"
                else r.leaf(field, doc[field.key])
            )
        elif field.default is REQUIRED:
            raise UserError(f"{where}: missing key {field.path!r}")
        else:
            default = field.default
            values[field.attr] = default * field.scale if isinstance(default, float) else default
    if values["prefill.scheduling"] == "chunked" and values["prefill.chunk_tokens"] is None:
        raise r.fail("prefill.chunk_tokens", "is required when prefill.scheduling is chunked")
    if values["allreduce.algorithm"] == "auto" and values["allreduce.one_shot_max_bytes"] <= 0:
        raise r.fail("allreduce.one_shot_max_kb", "must be positive when allreduce.algorithm is auto")
    calibrated = calibrated_fields(r, top.get("calibrated", []), CALIBRATABLE)
    devices = _devices(r, top.get("devices", {}), calibrated)
    for device in devices:
        sources[f"devices.{device}"] = top["devices"][device]["source"]
    tree: dict[str, Any] = {}
    for attr, value in values.items():
        set_dotted(tree, attr, value)
    built = {section: cls(**tree[section]) for section, cls in _CLASSES.items()}
    return StackSpec(
        name=tree["name"],
        description=tree["description"],
        **built,
        sources=sources,
        calibrated=calibrated,
        devices=devices,
        source_file=where,
    )


def _devices(r: FieldReader, raw: Any, calibrated: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per-device fitted values: only calibrated fields, each with its source."""
    table = r.mapping(raw, "devices")
    out: dict[str, dict[str, float]] = {}
    for device, entry in table.items():
        entry = r.mapping(entry, f"devices.{device}")
        fitted: dict[str, float] = {}
        for key, value in entry.items():
            if key == "source":
                continue
            if key not in calibrated:
                raise r.fail(f"devices.{device}.{key}", "is not listed under calibrated")
            field = next(f for f in FIELDS if f.path == key)
            r.number(field, value, f"devices.{device}.{key}")
            fitted[key] = float(value)
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise r.fail(f"devices.{device}.source", "must say what the values were fitted to")
        out[str(device)] = fitted
    return out


def stack_to_yaml_dict(stack: StackSpec) -> dict[str, Any]:
    """The stack in YAML field names and units, sources beside their fields; loads back to
    an equal stack (what `dartsim stack show` prints and a fit writes)."""
    data: dict[str, Any] = {"name": stack.name, "description": stack.description}
    if stack.calibrated:
        data["calibrated"] = list(stack.calibrated)
    for field in FIELDS:
        if field.section == "":
            continue
        value = get_dotted(stack, field.attr)
        if value is None:
            continue
        if field.kind == "fractions":
            value = dict(value)
        elif field.kind == "integer":
            value = int(value)
        elif field.kind in ("number", "fraction"):
            value = float(f"{value / field.scale:.12g}")
        set_dotted(data, field.path, value)
    own = {k: v for k, v in stack.sources.items() if not k.startswith("devices.")}
    put_sources(data, own, SECTIONS)
    if stack.devices:
        data["devices"] = {
            device: {**fitted, "source": stack.sources.get(f"devices.{device}", "fitted")}
            for device, fitted in stack.devices.items()
        }
    return data


def override_stack(stack: StackSpec, changes: dict[str, Any], note: str) -> StackSpec:
    """A copy of `stack` with YAML fields replaced (`{"launch.kernel_gap_us": 0.8}`),
    validated like a file; `note` is added to the changed fields' sources."""
    data = stack_to_yaml_dict(stack)
    devices = data.pop("devices", None)
    for path, value in changes.items():
        field = next((f for f in FIELDS if f.path == path), None)
        if field is None:
            raise UserError(f"{stack.source_file}: cannot override unknown stack field {path!r}")
        set_dotted(data, path, value)
        prior = stack.sources.get(path) or stack.sources.get(field.section, "")
        set_dotted(data, f"{field.section}.{field.key}_source", f"{note}; was: {prior}")
    if devices:
        data["devices"] = devices
    return stack_spec_from_dict(data, stack.source_file)


def stack_preset_names() -> list[str]:
    return preset_names(PRESET_FOLDER)


def load_stack_spec(name_or_path: str) -> StackSpec:
    """A preset name (`vllm`) or a path to a stack YAML file."""
    return stack_spec_from_dict(*read_named(name_or_path, PRESET_FOLDER, "software stack"))


@lru_cache(maxsize=128)
def _fitted(name_or_path: str, device: str) -> StackSpec:
    return load_stack_spec(name_or_path).for_device(device)


def resolve_stack_name(name_or_path: str, relative_to: str | None = None) -> str:
    """A stack preset name, or a stack file path resolved against the folder of the file
    that names it (a hardware file's `default_stack: ../stacks/npu.yaml`)."""
    if Path(name_or_path).suffix not in (".yaml", ".yml") or relative_to is None:
        return name_or_path
    path = Path(name_or_path)
    if not path.is_absolute():
        path = Path(relative_to).parent / path
    return str(path)


def stack_for(name_or_path: str, hw: HardwareSpec) -> StackSpec:
    """The stack `name_or_path` as it runs on `hw`: the values fitted on that device applied."""
    return _fitted(name_or_path, hw.name)


def default_stack(hw: HardwareSpec) -> StackSpec:
    """The stack `hw` names as its default (`default_stack`), fitted values applied."""
    try:
        return stack_for(resolve_stack_name(hw.default_stack, hw.source_file), hw)
    except UserError as exc:
        raise UserError(f"{hw.source_file}: default_stack: {exc}") from None
