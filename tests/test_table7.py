"""Table 7 reproduced from the workload model, and its report formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dartsim.report.table7 import (
    PAPER_CELLS,
    PAPER_MODELS,
    Table7Workload,
    table7_records,
)
from dartsim.specs.dtypes import FP16
from dartsim.specs.model import load_model_spec
from dartsim.units import BINARY, DECIMAL, GB, GiB
from dartsim.workload import Precision

REPO = Path(__file__).resolve().parents[1]
JSON_KEYS = {"model", "component", "metric", "config", "keep", "value", "unit", "paper"}


@pytest.fixture(scope="module")
def paper_records():  # type: ignore[no-untyped-def]
    specs = [load_model_spec(name) for name in PAPER_MODELS]
    return table7_records(specs, Table7Workload())


def test_every_dense_cell_equals_the_papers_printed_value(paper_records) -> None:  # type: ignore[no-untyped-def]
    dense = [r for r in paper_records if r.config == "dense"]
    assert len(dense) == 8
    for r in dense:
        printed = PAPER_CELLS[(r.model, r.component, r.metric, "dense")]
        assert f"{r.value:.2f}" == f"{printed:.2f}", r


def test_attention_is_unchanged_by_ffn_sparsity(paper_records) -> None:  # type: ignore[no-untyped-def]
    cells = {(r.model, r.component, r.metric, r.config): r.value for r in paper_records}
    for model in PAPER_MODELS:
        for metric in ("memory", "compute"):
            assert (
                cells[(model, "attention", metric, "sparse")] == cells[(model, "attention", metric, "dense")]
            )


def test_uniform_30_percent_gives_the_values_stated_in_the_reference(paper_records) -> None:  # type: ignore[no-untyped-def]
    """shared/reference/table7.md: keeping exactly 30% gives about 1.70/0.39 (8B) and
    16.39/3.94 (70B), not the printed cells."""
    cells = {(r.model, r.component, r.metric, r.config): r for r in paper_records}
    expected = {
        ("llama-3.1-8b", "memory"): 1.70,
        ("llama-3.1-8b", "compute"): 0.39,
        ("llama-3.1-70b", "memory"): 16.39,
        ("llama-3.1-70b", "compute"): 3.94,
    }
    for (model, metric), value in expected.items():
        record = cells[(model, "mlp", metric, "sparse")]
        assert f"{record.value:.2f}" == f"{value:.2f}"
        assert record.keep == pytest.approx(0.3, abs=1e-4)


def test_the_paper_sparse_cells_imply_the_reference_kept_fractions(paper_records) -> None:  # type: ignore[no-untyped-def]
    implied = {
        (r.model, r.metric): r.paper_keep
        for r in paper_records
        if r.config == "sparse" and r.component == "mlp"
    }
    assert implied[("llama-3.1-8b", "memory")] == pytest.approx(0.263, abs=0.002)
    assert implied[("llama-3.1-70b", "memory")] == pytest.approx(0.314, abs=0.002)
    assert implied[("llama-3.1-70b", "compute")] == pytest.approx(0.314, abs=0.002)
    # The 8B compute cell (0.35) is printed to two decimals: it pins keep only to +-0.004.
    assert implied[("llama-3.1-8b", "compute")] == pytest.approx(0.263, abs=0.005)


def test_decimal_units_rescale_values_and_paper_cells(paper_records) -> None:  # type: ignore[no-untyped-def]
    specs = [load_model_spec(name) for name in PAPER_MODELS]
    decimal = table7_records(specs, Table7Workload(), units=DECIMAL)
    for b, d in zip(paper_records, decimal, strict=True):
        if b.metric == "memory":
            assert d.value == pytest.approx(b.value * GiB / GB)
            assert d.paper == pytest.approx(b.paper * GiB / GB)
            assert d.unit == DECIMAL.bytes_label and b.unit == BINARY.bytes_label


def test_another_workload_shows_no_paper_values() -> None:
    workload = Table7Workload(tokens=1, context=4096, precision=Precision(weight=FP16))
    records = table7_records([load_model_spec("llama-2-7b")], workload)
    assert all(r.paper is None and r.paper_keep is None for r in records)
    assert len(records) == 8


def test_json_is_a_stable_list_of_records(run_cli) -> None:  # type: ignore[no-untyped-def]
    first = run_cli("table7", "--format", "json")
    second = run_cli("table7", "--format", "json")
    assert first.code == 0 and first.out == second.out
    records = json.loads(first.out)
    assert len(records) == 16
    for record in records:
        assert set(record) >= JSON_KEYS
        assert record["component"] in ("attention", "mlp")
        assert record["metric"] in ("memory", "compute")
        assert record["config"] in ("dense", "sparse")


def test_keep_option_changes_only_the_sparse_column(run_cli) -> None:  # type: ignore[no-untyped-def]
    half = json.loads(run_cli("table7", "--keep", "0.5", "--format", "json").out)
    default = json.loads(run_cli("table7", "--format", "json").out)
    for a, b in zip(half, default, strict=True):
        if a["config"] == "dense" or a["component"] == "attention":
            assert a["value"] == b["value"]
        else:
            assert a["value"] > b["value"] and a["keep"] == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("fmt", ["md", "csv", "latex"])
def test_every_format_carries_units(run_cli, fmt: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("table7", "--format", fmt)
    assert result.code == 0
    assert "GiB" in result.out and "TiFLOP" in result.out


def test_latex_is_a_booktabs_table(run_cli) -> None:  # type: ignore[no-untyped-def]
    out = run_cli("table7", "--format", "latex").out
    assert out.startswith("\\begin{table}") and "\\toprule" in out and out.rstrip().endswith("\\end{table}")
    assert out.count("\\\\") == 9  # header + 8 rows


def test_options_make_tables_for_other_models_and_precisions(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "table7",
        "--models",
        "llama-2-7b,qwen3-14b",
        "--step-tokens",
        "1",
        "--context",
        "2048",
        "--weight-dtype",
        "int4",
        "--act-dtype",
        "bf16",
        "--kv-dtype",
        "fp16",
        "--units",
        "decimal",
        "--format",
        "csv",
    )
    assert result.code == 0
    lines = result.out.strip().splitlines()
    assert len(lines) == 1 + 16
    assert "qwen3-14b" in result.out and "GB" in result.out


def test_out_writes_the_file_atomically(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "t7.json"
    result = run_cli("table7", "--format", "json", "--out", str(target))
    assert result.code == 0 and result.out == ""
    assert json.loads(target.read_text())[0]["model"] == "llama-3.1-70b"
    assert [p.name for p in tmp_path.iterdir()] == ["t7.json"]


def test_out_into_a_missing_folder_is_one_line_and_writes_nothing(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "nowhere" / "t7.md"
    result = run_cli("table7", "--out", str(target))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "does not exist" in result.err
    assert not target.parent.exists()


@pytest.mark.parametrize(("name", "fmt"), [("table7.md", "md"), ("table7.json", "json")])
def test_golden_report_is_current(run_cli, name: str, fmt: str) -> None:  # type: ignore[no-untyped-def]
    """reports/table7.* are regenerated with `dartsim table7 --format F --out reports/...`."""
    golden = (REPO / "reports" / name).read_text()
    assert run_cli("table7", "--format", fmt).out == golden


def test_table7_energy_rows_are_the_dynamic_energy_of_each_component(run_cli) -> None:  # type: ignore[no-untyped-def]
    import json

    from dartsim.report.table7 import Table7Workload, _component_totals
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Component

    r = run_cli("table7", "--energy-hw", "h100-sxm", "--format", "json")
    assert r.code == 0, r.err
    rows = {
        (x["model"], x["component"], x["config"]): x for x in json.loads(r.out) if x["metric"] == "energy"
    }
    assert len(rows) == 8 and all(x["unit"] == "J" for x in rows.values())
    e = load_hardware_spec("h100-sxm").energy
    spec = load_model_spec("llama-3.1-8b")
    totals = _component_totals(spec, Table7Workload(), spec.intermediate_size)[Component.MLP]
    by_hand = (
        totals.bytes * 8 * (e.dram_j_per_bit + e.onchip_j_per_bit) + totals.flops * e.tensor_j_per_flop["fp8"]
    )
    assert rows[("llama-3.1-8b", "mlp", "dense")]["value"] == pytest.approx(by_hand, rel=1e-12)
    assert rows[("llama-3.1-8b", "mlp", "sparse")]["value"] < rows[("llama-3.1-8b", "mlp", "dense")]["value"]
    attention = rows[("llama-3.1-70b", "attention", "dense")]["value"]
    assert rows[("llama-3.1-70b", "attention", "sparse")]["value"] == attention
    plain = run_cli("table7", "--format", "json")
    assert all(x["metric"] != "energy" for x in json.loads(plain.out))
    none = run_cli("table7", "--energy-hw", "l40s")
    assert none.code == 2 and "no energy section" in none.err
