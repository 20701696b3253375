"""Hardware presets and the strict YAML loader."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dartsim.errors import UserError
from dartsim.specs.dtypes import FP8, FP16
from dartsim.specs.hardware import hardware_preset_names, load_hardware_spec
from dartsim.units import GB, TFLOP

REQUIRED_PRESETS = {"l40s", "h100-sxm", "h100-pcie", "h200", "a100-sxm-80gb", "b200", "mi300x"}

# Datasheet figures from shared/reference/hardware.md: bandwidth (GB/s), FP8 and FP16
# dense peaks (TFLOP/s, None where the device has no FP8), capacity (GB).
DATASHEET = {
    "l40s": (864, 733, 362, 48),
    "h100-sxm": (3350, 1979, 989.5, 80),
    "h100-pcie": (2000, 1513, 756.5, 80),
    "h200": (4800, 1979, 989.5, 141),
    "a100-sxm-80gb": (2039, None, 312, 80),
    "b200": (7700, 4500, 2250, 180),
    "mi300x": (5300, 2614.9, 1307.4, 192),
}


def test_every_required_preset_is_shipped() -> None:
    assert set(hardware_preset_names()) >= REQUIRED_PRESETS


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_presets_use_dense_datasheet_peaks(name: str) -> None:
    hw = load_hardware_spec(name)
    bandwidth, fp8, fp16, capacity = DATASHEET[name]
    assert hw.memory.peak_bandwidth_bytes_per_s == pytest.approx(bandwidth * GB)
    assert hw.memory.capacity_bytes == capacity * GB
    assert hw.compute.tensor_flops_per_s["fp16"] == pytest.approx(fp16 * TFLOP)
    if fp8 is None:
        assert not hw.has_tensor_dtype(FP8)
    else:
        assert hw.compute.tensor_flops_per_s["fp8"] == pytest.approx(fp8 * TFLOP)
        # Dense FP8 is twice dense FP16, never the 2:4-sparse figure (4x).
        assert hw.tensor_flops_per_s(FP8) == pytest.approx(2 * hw.tensor_flops_per_s(FP16), rel=0.02)


@pytest.mark.parametrize("name", sorted(REQUIRED_PRESETS))
def test_every_section_and_efficiency_cites_a_source(name: str) -> None:
    hw = load_hardware_spec(name)
    expected = {
        "memory",
        "compute",
        "on_chip",
        "noc",
        "link",
        "launch_overhead",
        "memory.efficiency",
        "compute.efficiency",
    }
    assert set(hw.sources) == expected
    for key in ("memory.efficiency", "compute.efficiency"):
        text = hw.sources[key]
        assert "measured" in text or "assumption" in text, f"{name} {key}: {text}"


def test_fp8_on_a100_is_an_error_naming_file_and_field() -> None:
    hw = load_hardware_spec("a100-sxm-80gb")
    with pytest.raises(UserError, match=r"a100-sxm-80gb\.yaml: hardware 'a100-sxm-80gb' has no fp8"):
        hw.tensor_flops_per_s(FP8)


def _preset_dict(name: str = "l40s") -> dict[str, Any]:
    path = Path(load_hardware_spec(name).source_file)
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_copy_of_a_preset_loads_from_a_path(tmp_path: Path) -> None:
    path = _write(tmp_path, _preset_dict())
    hw = load_hardware_spec(path)
    preset = load_hardware_spec("l40s")
    assert hw.source_file == path
    assert (hw.memory, hw.compute, hw.noc, hw.link) == (
        preset.memory,
        preset.compute,
        preset.noc,
        preset.link,
    )


def _mutated(path_in_doc: list[str], value: Any, delete: bool = False) -> dict[str, Any]:
    data = copy.deepcopy(_preset_dict())
    node = data
    for key in path_in_doc[:-1]:
        node = node[key]
    if delete:
        del node[path_in_doc[-1]]
    else:
        node[path_in_doc[-1]] = value
    return data


@pytest.mark.parametrize(
    ("where", "value", "delete", "message"),
    [
        (["memory", "bandwdith_gb_per_s"], 864, False, "unknown key 'memory.bandwdith_gb_per_s'"),
        (
            ["memory", "peak_bandwidth_gb_per_s"],
            None,
            True,
            "missing key 'memory.peak_bandwidth_gb_per_s'",
        ),
        (
            ["memory", "peak_bandwidth_gb_per_s"],
            0,
            False,
            "'memory.peak_bandwidth_gb_per_s' must be positive and finite, got 0",
        ),
        (
            ["memory", "capacity_gb"],
            -48,
            False,
            "'memory.capacity_gb' must be positive and finite, got -48",
        ),
        (
            ["compute", "tensor_dense_tflop_per_s", "fp8"],
            0,
            False,
            "'compute.tensor_dense_tflop_per_s.fp8' must be positive",
        ),
        (
            ["compute", "tensor_dense_tflop_per_s", "fp6"],
            100,
            False,
            "unknown key 'compute.tensor_dense_tflop_per_s.fp6'",
        ),
        (
            ["memory", "efficiency"],
            1.3,
            False,
            "'memory.efficiency' is an efficiency factor and must lie in (0, 1], got 1.3",
        ),
        (
            ["memory", "channels"],
            2.5,
            False,
            "'memory.channels' must be a positive integer, got 2.5",
        ),
        (["link", "source"], "", False, "'link.source' must be a non-empty string"),
        (
            ["noc", "topology"],
            "torus",
            False,
            "'noc.topology' must be one of crossbar, ring, mesh, got 'torus'",
        ),
        (["memory"], None, True, "missing key 'memory'"),
    ],
)
def test_invalid_files_name_the_file_field_and_value(
    tmp_path: Path, where: list[str], value: Any, delete: bool, message: str
) -> None:
    path = _write(tmp_path, _mutated(where, value, delete))
    with pytest.raises(UserError) as err:
        load_hardware_spec(path)
    text = str(err.value)
    assert text.startswith(path)
    assert message in text


def test_mesh_dimensions_must_match_the_tile_count(tmp_path: Path) -> None:
    data = _preset_dict()
    data["noc"].update(topology="mesh", tiles=64, mesh_rows=8, mesh_cols=7)
    with pytest.raises(UserError, match=re.escape("8 x 7 = 56 does not match noc.tiles = 64")):
        load_hardware_spec(_write(tmp_path, data))
    data["noc"]["mesh_cols"] = 8
    assert load_hardware_spec(_write(tmp_path, data)).noc.mesh_rows == 8


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmemory: [unclosed\n")
    with pytest.raises(UserError, match=r"broken\.yaml: malformed YAML at line"):
        load_hardware_spec(str(path))


def test_unknown_hardware_lists_the_presets() -> None:
    with pytest.raises(UserError, match="unknown hardware 'tpu-v9'; valid names: a100-sxm-80gb"):
        load_hardware_spec("tpu-v9")
