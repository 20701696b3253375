"""Energy: the hardware file's bands, the formula on the engine's counts, parts adding up
to the totals, and the preset constants' citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dartsim.engine.energy import Counts, energy
from dartsim.specs.hardware import hardware_preset_names, load_hardware_spec
from dartsim.specs.hardware_yaml import hardware_to_yaml_dict

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "traces" / "two-topic-70.pt"

# round numbers, so that a hand computation is easy to follow
CONSTANTS = {
    "dram_pj_per_bit": (4.0, 3.0, 6.0),
    "onchip_pj_per_bit": (1.0, 0.5, 2.0),
    "link_pj_per_bit": (1.5, 1.0, 3.0),
    "host_link_pj_per_bit": (5.0, 4.0, 10.0),
    "static_w": (100.0, 80.0, 150.0),
}
TENSOR = ({"fp8": 0.2, "fp16": 0.4}, {"fp8": 0.1, "fp16": 0.3}, {"fp8": 0.5, "fp16": 0.8})


def energy_section() -> dict[str, object]:
    doc: dict[str, object] = {"source": "round test values"}
    for key, (mid, low, high) in CONSTANTS.items():
        doc.update({key: mid, f"{key}_low": low, f"{key}_high": high})
    doc.update(
        tensor_pj_per_flop=TENSOR[0], tensor_pj_per_flop_low=TENSOR[1], tensor_pj_per_flop_high=TENSOR[2]
    )
    doc["board_power_w"] = 700.0
    return doc


@pytest.fixture(scope="module")
def hw_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """h100-sxm with the round energy constants above."""
    data = hardware_to_yaml_dict(load_hardware_spec("h100-sxm"))
    data["energy"] = energy_section()
    path = tmp_path_factory.mktemp("hw") / "h100-energy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def by_hand(bytes_: int, flops: int, time_s: float, link: int = 0, host: int = 0, fmt: str = "fp8") -> float:
    """bytes x 8 x (dram + on-chip) pJ/bit + FLOPs x pJ/FLOP + link and host bits + static W x s."""
    pj = 1e-12
    dram, onchip, lnk, hst, static = (CONSTANTS[k][0] for k in CONSTANTS)
    return (
        bytes_ * 8 * (dram + onchip) * pj
        + flops * TENSOR[0][fmt] * pj
        + link * 8 * lnk * pj
        + host * 8 * hst * pj
        + static * time_s
    )


def test_the_formula_is_the_hand_computation_at_each_end_of_the_band(hw_file: Path) -> None:
    spec = load_hardware_spec(str(hw_file)).energy
    assert spec is not None
    c = Counts(dram_bytes=16_000_000_000, flops=32_000_000_000, time_s=0.005, link_bytes=1000, host_bytes=64)
    e = energy(spec, c, "fp8")
    assert e.j == pytest.approx(by_hand(c.dram_bytes, c.flops, c.time_s, c.link_bytes, c.host_bytes))
    low = 16e9 * 8 * 3.5e-12 + 32e9 * 0.1e-12 + 1000 * 8 * 1e-12 + 64 * 8 * 4e-12 + 80 * 0.005
    assert e.low_j == pytest.approx(low)
    assert e.low_j < e.j < e.high_j


def test_one_decode_step_by_hand_dense_and_sparse(run_cli, hw_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("replay", str(TRACE), "--hw", str(hw_file), "--model", "llama-3.1-8b", "--compare-dense",
                "--format", "json", "--quiet")  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    for run in (doc, doc["dense"]):
        t = run["totals"]
        host = sum(b["host_bytes"] for b in run["retriggers"])
        assert t["energy_j"] == pytest.approx(
            by_hand(t["bytes"], t["flops"], t["time_s"], t["link_bytes"], host)
        )
        assert t["energy_j_low"] < t["energy_j"] < t["energy_j_high"]
        parts = run["components"]
        for key in ("energy_j", "energy_j_low", "energy_j_high"):
            assert sum(parts[c][key] for c in ("attention", "mlp", "other")) == pytest.approx(
                t[key], rel=1e-12
            )
            for comp in ("attention", "mlp"):
                layers = sum(row[comp][key] for row in run["layers"])
                assert layers == pytest.approx(parts[comp][key], rel=1e-12)
        row = run["layers"][3]["mlp"]
        assert row["energy_j"] == pytest.approx(by_hand(row["bytes"], row["flops"], row["time_s"]))
        assert run["energy_per_token_j"] == pytest.approx(t["energy_j"] * doc["tp"] / run["tokens"])
        assert run["avg_power_w"] == pytest.approx(t["energy_j"] / t["time_s"])
        assert run["board_power_w"] == 700.0
    # the sparse run moves fewer bytes: less MLP energy than dense
    assert doc["components"]["mlp"]["energy_j"] < doc["dense"]["components"]["mlp"]["energy_j"]


def test_without_an_energy_section_the_fields_are_null(run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli(
        "replay", str(TRACE), "--hw", "l40s", "--model", "llama-3.1-8b", "--format", "json", "--quiet"
    )
    doc = json.loads(r.out)
    if load_hardware_spec("l40s").energy is None:
        assert doc["totals"]["energy_j"] is None and doc["energy_per_token_j"] is None
    else:
        assert doc["totals"]["energy_j"] > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(static_w_low=500.0), "must lie within its _low and _high values"),
        (lambda e: e.pop("dram_pj_per_bit_high"), "missing key 'energy.dram_pj_per_bit_high'"),
        (lambda e: e.update(tensor_pj_per_flop_low={"fp8": 0.1}), "must list the same formats"),
        (lambda e: e.update(dram_pj_per_bit=-1.0), "must be positive"),
        (lambda e: e.update(colour=1), "unknown key 'energy.colour'"),
        (lambda e: e.pop("source"), "missing key 'energy.source'"),
    ],
    ids=["band order", "missing end", "format sets", "negative", "unknown key", "no source"],
)
def test_a_bad_energy_section_is_one_line(run_cli, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = hardware_to_yaml_dict(load_hardware_spec("h100-sxm"))
    section = energy_section()
    change(section)
    data["energy"] = section
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("hw", "show", str(path))
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1


def test_a_hardware_file_with_energy_round_trips(hw_file: Path) -> None:
    from dartsim.specs.hardware import hardware_spec_from_dict

    hw = load_hardware_spec(str(hw_file))
    assert hardware_spec_from_dict(hardware_to_yaml_dict(hw), hw.source_file) == hw


def test_every_preset_energy_constant_cites_its_source() -> None:
    for name in hardware_preset_names():
        hw = load_hardware_spec(name)
        if hw.energy is None:
            continue
        for key in ("dram_pj_per_bit", "tensor_pj_per_flop", "static_w", "board_power_w"):
            assert hw.sources.get(f"energy.{key}"), f"{name}: energy.{key} has no source of its own"


def test_serving_energy_charges_every_device_static_power_for_the_whole_run(run_cli, hw_file: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("serve", "--model", "llama-3.1-8b", "--hw", str(hw_file), "--rate", "2", "--requests", "20",
                "--prompt-len", "200", "--gen-len", "40", "--masks", str(TRACE), "--compare-dense",
                "--format", "json", "--quiet")  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    for run in (doc, doc["dense"]):
        tp = doc["setup"]["tp"]
        expected = tp * by_hand(run["dram_bytes"], run["flops"], run["duration_s"])
        # link and host bytes are zero at TP 1 without swaps (mask uploads aside): within 1e-6
        assert run["energy_j"] == pytest.approx(expected, rel=1e-6)
        assert run["energy_per_token_j"] == pytest.approx(run["energy_j"] / run["output_tokens"])
        assert run["avg_power_w"] == pytest.approx(run["energy_j"] / (tp * run["duration_s"]))
        assert run["energy_j_low"] < run["energy_j"] < run["energy_j_high"]
    # idle time is charged too: the energy is at least static power x duration
    assert doc["energy_j"] >= 100.0 * doc["duration_s"]


def test_the_worked_decode_step_in_docs_energy_md_is_what_dartsim_computes() -> None:
    """docs/energy.md: one Llama-3.1-8B decode step on one H100 SXM (batch 1, context 1024,
    FP8 weights and KV, dense, then 30% of the MLP kept) with the preset's nominal constants."""
    from dartsim.engine.costing import StepCoster
    from dartsim.engine.replay_config import ReplayConfig, ReplayStep
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Precision

    doc = (REPO / "docs" / "energy.md").read_text()
    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    assert hw.energy is not None
    coster = StepCoster(spec, hw, ReplayConfig(precision=Precision()))
    width, layers = spec.intermediate_size, spec.num_layers
    dense = coster.cost(ReplayStep("decode", 1, (1024,), (width,) * layers, False))
    sparse = coster.cost(ReplayStep("decode", 1, (1024,), (int(0.3 * width),) * layers, False))
    e = energy(hw.energy, Counts(dense.bytes, dense.flops, dense.time_s, dense.link_bytes), "fp8")
    es = energy(hw.energy, Counts(sparse.bytes, sparse.flops, sparse.time_s), "fp8")
    mid = hw.energy
    for text in (
        f"{dense.bytes:,}",
        f"{dense.flops:,}",
        f"{dense.time_s * 1e3:.4f} ms",
        f"{dense.bytes * 8 * mid.dram_j_per_bit:.5f}",
        f"{dense.bytes * 8 * mid.onchip_j_per_bit:.5f}",
        f"{dense.flops * mid.tensor_j_per_flop['fp8']:.5f}",
        f"{mid.static_w * dense.time_s:.5f}",
        f"| total | | {e.j:.4f} |",
        f"{e.low_j:.2f} J to {e.high_j:.2f} J",
        f"= {e.j / dense.time_s:.0f} W",
        f"{sparse.bytes:,} bytes in {sparse.time_s * 1e3:.4f} ms",
        f"costs {es.j:.3f} J: {es.j / e.j:.2f}x the dense joules for "
        f"{sparse.time_s / dense.time_s:.2f}x the time",
    ):
        assert text in doc, f"docs/energy.md does not say {text!r}"


def test_prefill_and_decode_energy_are_apart_and_add_up(run_cli, hw_file: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("replay", str(TRACE), "--hw", str(hw_file), "--model", "llama-3.1-8b", "--format", "json",
                "--quiet")  # fmt: skip
    doc = json.loads(r.out)
    first, rest = doc["energy_prefill_j"], doc["energy_decode_j"]
    assert 0 < first < rest
    assert first + rest == pytest.approx(doc["totals"]["energy_j"], rel=1e-12)
    # the prefill's static share is its time: at least static W x TTFT without the requests' handling
    assert first >= 100.0 * (doc["ttft_s"] - 0.01)
