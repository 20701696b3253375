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
from dartsim.specs.stack import default_stack
from dartsim.units import GB, TFLOP

REQUIRED_PRESETS = {"l40s", "h100-sxm", "h100-pcie", "h200", "a100-sxm-80gb", "b200", "mi300x"}

# Datasheet figures from shared/reference/hardware.md: bandwidth (GB/s), FP8 and FP16
# dense peaks (TFLOP/s, None where the device has no FP8), capacity (GB). The "80 GB" of
# A100 and H100 is 80 GiB (nvidia-smi reports 81920 and 81559 MiB): 85.899 GB.
GIB80 = 80 * 2**30 / 1e9
DATASHEET = {
    "l40s": (864, 733, 362, 48),
    "h100-sxm": (3350, 1979, 989.5, GIB80),
    "h100-pcie": (2000, 1513, 756.5, GIB80),
    "h200": (4800, 1979, 989.5, 141),
    "a100-sxm-80gb": (2039, None, 312, GIB80),
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
    assert hw.memory.capacity_bytes == pytest.approx(capacity * GB, rel=1e-5)
    assert hw.compute.tensor_flops_per_s["fp16"] == pytest.approx(fp16 * TFLOP)
    if fp8 is None:
        assert not hw.has_tensor_dtype(FP8)
    else:
        assert hw.compute.tensor_flops_per_s["fp8"] == pytest.approx(fp8 * TFLOP)
        # Dense FP8 is twice dense FP16, never the 2:4-sparse figure (4x).
        assert hw.tensor_flops_per_s(FP8) == pytest.approx(2 * hw.tensor_flops_per_s(FP16), rel=0.02)


EFFICIENCY_FIELDS = ("memory.efficiency", "link.efficiency")


@pytest.mark.parametrize("name", sorted(REQUIRED_PRESETS))
def test_every_section_and_efficiency_cites_a_source(name: str) -> None:
    hw = load_hardware_spec(name)
    sections = {"memory", "compute", "compute.gemm", "on_chip", "noc", "link", "host_link"}
    assert sections <= set(hw.sources)
    for key in EFFICIENCY_FIELDS:
        assert key in hw.sources, f"{name}: {key} has no source of its own"
    assert any(word in hw.sources["compute.gemm"] for word in ("measured", "fitted", "assumption"))
    assert any(word in hw.sources["memory.efficiency"] for word in ("measured", "assumption"))


@pytest.mark.parametrize("name", sorted(REQUIRED_PRESETS))
def test_gpu_presets_hold_hardware_and_name_a_stack(name: str) -> None:
    """A GPU preset holds the link's topology and latency, and names a software stack
    that loads; launch, collective and attention-kernel costs are not in it."""
    hw = load_hardware_spec(name)
    assert hw.link.latency_s > 0 and hw.link.topology in ("switch", "full_mesh", "pcie")
    assert hw.link.max_devices >= 1
    assert not hw.on_chip.weight_prefetch
    assert hw.defaults == ()  # every field of a shipped preset is written out with its source
    stack = default_stack(hw)
    assert stack.launch.mode == "graph" and not stack.launch.synchronous
    text = Path(hw.source_file).read_text()
    for moved in ("launch:", "attention_efficiency", "allreduce_call_us"):
        assert moved not in text


@pytest.mark.parametrize("key", ["launch", "attention_efficiency", "allreduce_call_us"])
def test_moved_keys_point_to_the_stack_file(tmp_path: Path, key: str) -> None:
    data = _preset_dict()
    section = {"launch": data, "attention_efficiency": data["compute"], "allreduce_call_us": data["link"]}[
        key
    ]
    section[key] = {"mode": "graph"} if key == "launch" else 1.0
    path = _write(tmp_path, data)
    with pytest.raises(UserError, match="moved to the software stack file"):
        load_hardware_spec(path)


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
        (["memory", "capacity_gb"], 1.0e300, False, "'memory.capacity_gb' must be at most 100000"),
        (["memory", "latency_ns"], -1, False, "'memory.latency_ns' must be zero or positive, got -1"),
        (["link", "topology"], "torus", False, "'link.topology' must be one of switch, full_mesh, pcie"),
        (["link", "max_devices"], 0, False, "'link.max_devices' must be a positive integer, got 0"),
        (["compute", "gemm", "tile_m"], 0, False, "'compute.gemm.tile_m' must be a positive integer, got 0"),
        (["calibrated"], ["memory.type"], False, "names 'memory.type', which is not a numeric field"),
        (
            ["launch_overhead_us"],
            4,
            False,
            "unknown key 'launch_overhead_us': the launch costs are moved to the software stack file",
        ),
        (["memory", "latency_nanos_source"], "x", False, "unknown key 'memory.latency_nanos_source'"),
        (
            ["compute", "tensor_sparse_2to4_tflop_per_s", "fp8"],
            10,
            False,
            "'compute.tensor_sparse_2to4_tflop_per_s.fp8' is below the dense peak",
        ),
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


@pytest.mark.parametrize(
    ("tiles", "topology", "extra", "message"),
    [
        (1, "ring", {}, "one tile has no network"),
        (1, "mesh", {"mesh_rows": 1, "mesh_cols": 1}, "one tile has no network"),
        (2, "ring", {}, "needs at least 4 tiles"),
    ],
)
def test_a_network_too_small_for_its_topology_is_refused(
    tmp_path: Path, tiles: int, topology: str, extra: dict[str, int], message: str
) -> None:
    """The topology changed the result of a one-tile network; the ring's four-link bisection
    does not exist below four tiles."""
    data = _preset_dict()
    data["noc"].update(topology=topology, tiles=tiles, **extra)
    with pytest.raises(UserError, match=message):
        load_hardware_spec(_write(tmp_path, data))
    data["noc"].update(topology="crossbar", tiles=tiles)
    for key in extra:
        data["noc"].pop(key)
    assert load_hardware_spec(_write(tmp_path, data)).noc.tiles == tiles


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


def test_fields_with_defaults_may_be_left_out_and_are_reported(tmp_path: Path) -> None:
    data = _preset_dict()
    del data["memory"]["burst_bytes"]
    del data["compute"]["gemm"]["k_overhead"]
    hw = load_hardware_spec(_write(tmp_path, data))
    assert hw.memory.burst_bytes == 64 and hw.compute.gemm.k_overhead == 0.0
    assert set(hw.defaults) == {"memory.burst_bytes", "compute.gemm.k_overhead"}


def test_yaml_duplicate_keys_are_refused_and_exponents_are_numbers(tmp_path: Path) -> None:
    text = Path(load_hardware_spec("l40s").source_file).read_text()
    dup = tmp_path / "dup.yaml"
    dup.write_text(re.sub(r"(\n  channels: [0-9]+\n)", r"\1  channels: 13\n", text, count=1))
    with pytest.raises(UserError, match=r"dup\.yaml: malformed YAML at line \d+: duplicate key 'channels'"):
        load_hardware_spec(str(dup))
    exp = tmp_path / "exp.yaml"
    exp.write_text(re.sub(r"latency_ns: [0-9.]+", "latency_ns: 5e2", text, count=1))
    assert load_hardware_spec(str(exp)).memory.latency_s == pytest.approx(500e-9)


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        UserError, match=r"bomb\.yaml: malformed YAML at line 2: aliases \(\*name\) are not allowed"
    ):
        load_hardware_spec(str(bomb))


def test_override_changes_a_field_and_records_why() -> None:
    from dartsim.specs.hardware_yaml import override

    hw = load_hardware_spec("h100-sxm")
    doubled = override(hw, {"memory.peak_bandwidth_gb_per_s": 6700}, "study: HBM x2")
    assert doubled.memory.peak_bandwidth_bytes_per_s == pytest.approx(
        2 * hw.memory.peak_bandwidth_bytes_per_s
    )
    assert doubled.sources["memory.peak_bandwidth_gb_per_s"].startswith("study: HBM x2")
    assert doubled.compute == hw.compute
    with pytest.raises(UserError, match=r"unknown field 'memory\.speed'"):
        override(hw, {"memory.speed": 1}, "x")
    with pytest.raises(UserError, match="must be positive"):
        override(hw, {"memory.peak_bandwidth_gb_per_s": -1}, "x")


def test_a_huge_integer_is_a_range_error_not_a_crash(tmp_path: Path) -> None:
    text = Path(load_hardware_spec("l40s").source_file).read_text()
    path = tmp_path / "huge.yaml"
    path.write_text(re.sub(r"capacity_gb: [0-9.]+", "capacity_gb: 1" + "0" * 4000, text, count=1))
    with pytest.raises(
        UserError, match=r"'memory.capacity_gb' must be at most 100000 .*an integer of 13288 bits"
    ):
        load_hardware_spec(str(path))
    path.write_text(re.sub(r"capacity_gb: [0-9.]+", "capacity_gb: 1" + "0" * 5000, text, count=1))
    with pytest.raises(UserError, match=r"huge\.yaml: malformed YAML: an integer with thousands of digits"):
        load_hardware_spec(str(path))


def test_hw_show_output_saved_elsewhere_loads_and_runs(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A hardware file naming its stack file relative to itself used to print that relative
    name, so the printed file (saved anywhere else) was refused when used."""
    repo = Path(__file__).resolve().parents[1]
    shown = run_cli("hw", "show", str(repo / "traces" / "host-2026-11-23.yaml"))
    assert shown.code == 0, shown.err
    copy = tmp_path / "elsewhere" / "host.yaml"
    copy.parent.mkdir()
    copy.write_text(shown.out)
    trace = str(repo / "traces" / "two-topic-70.pt")
    r = run_cli("replay", trace, "--hw", str(copy), "--weight-dtype", "fp32", "--act-dtype", "fp32",
                "--kv-dtype", "fp32", "--format", "json", "--quiet")  # fmt: skip
    assert r.code == 0, r.err
