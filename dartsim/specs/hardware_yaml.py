"""Hardware specs back to YAML, and edited copies: what `dartsim hw show` prints and
`dartsim calibrate` writes, and the field changes that studies, fits and the mechanism
report make. A spec written out loads back to an equal spec."""

from __future__ import annotations

from typing import Any

from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec, get_dotted, hardware_spec_from_dict, put_sources, set_dotted
from dartsim.specs.hardware_schema import FIELDS, OPTIONAL_SECTIONS, SECTIONS


def _edge(value: float) -> float:
    """An SI value converted back to a YAML unit, without binary-fraction noise."""
    return float(f"{value:.12g}")


def hardware_to_yaml_dict(hw: HardwareSpec) -> dict[str, Any]:
    """The spec in the YAML field names and units, sources beside their fields (what
    `dartsim hw show` prints and `dartsim calibrate` writes); loads back to an equal spec."""
    data: dict[str, Any] = {"name": hw.name, "description": hw.description, "default_stack": hw.default_stack}
    if hw.calibrated:
        data["calibrated"] = list(hw.calibrated)
    for field in FIELDS:
        if field.section == "" or (field.section == "energy" and hw.energy is None):
            continue
        value = get_dotted(hw, field.attr)
        if value is None:
            continue
        if field.kind == "rates":
            value = {k: _edge(v / field.scale) for k, v in value.items()}
        elif field.kind == "integer":
            value = int(value)
        elif field.kind in ("number", "fraction"):
            value = _edge(value / field.scale)
        set_dotted(data, field.path, value)
    put_sources(data, hw.sources, SECTIONS + OPTIONAL_SECTIONS)
    return data


def override(hw: HardwareSpec, changes: dict[str, Any], note: str) -> HardwareSpec:
    """A copy of `hw` with YAML fields replaced (`{"memory.peak_bandwidth_gb_per_s": 6700}`)
    or, given None, removed (a field that no longer applies), validated like a file once all
    changes are made; `note` is added to the changed fields' sources."""
    data = hardware_to_yaml_dict(hw)
    for path, value in changes.items():
        field = next((f for f in FIELDS if f.path == path), None)
        if field is None:
            raise UserError(f"{hw.source_file}: cannot override unknown field {path!r}")
        if value is None:
            data.get(field.section, {}).pop(field.key, None)
            continue
        set_dotted(data, path, value)
        section = field.section
        prior = hw.sources.get(path) or hw.sources.get(section, "")
        set_dotted(data, f"{section}.{field.key}_source", f"{note}; was: {prior}")
    return hardware_spec_from_dict(data, hw.source_file)
