"""What the hardware and software-stack files share: a folder of YAML presets shipped with
dartsim, looked up by name or replaced by a path, and the `calibrated` list of fields a
fit may change."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from dartsim.errors import unknown_name
from dartsim.specs.hardware_fields import FieldReader
from dartsim.specs.strict_yaml import read_yaml
from dartsim.text import brief

PRESET_PACKAGE = "dartsim.specs"


def preset_dir(folder: str) -> Path:
    return Path(str(resources.files(PRESET_PACKAGE).joinpath(folder)))


def preset_names(folder: str) -> list[str]:
    return sorted(p.stem for p in preset_dir(folder).glob("*.yaml"))


def read_named(name_or_path: str, folder: str, what: str) -> tuple[Any, str]:
    """(parsed YAML, where it came from) of a preset name or a path to a YAML file; a name
    that is neither lists the presets."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return read_yaml(candidate), str(candidate)
    names = preset_names(folder)
    key = name_or_path.lower()
    if key not in names:
        raise unknown_name(what, name_or_path, names)
    path = preset_dir(folder) / f"{key}.yaml"
    return read_yaml(path), str(path)


def calibrated_fields(r: FieldReader, raw: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The `calibrated` list: numeric fields of the schema, each once."""
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise r.fail("calibrated", f"must be a list of field names, got {brief(raw)}")
    for path in raw:
        if path not in allowed:
            raise r.fail("calibrated", f"names {path!r}, which is not a numeric field")
    if len(set(raw)) != len(raw):
        raise r.fail("calibrated", "lists a field twice")
    return tuple(raw)
