"""Figure 5 and re-trigger tables from traces, and the shipped reports stay current."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dartsim.policies.dart.params import DartParams
from dartsim.policies.dart.synth import synth_trace
from dartsim.report.drift_report import figure5_png, retrigger_rows
from dartsim.specs.model import load_model_spec
from dartsim.trace import Trace, save_trace

SMALL_T = DartParams(reference_tokens=20, tau=10)
"""A short reference so that short synthetic traces have room for re-triggers."""

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _with_curve(trace: Trace, phase: float) -> Trace:
    steps = trace.steps.count - 1
    values = [math.nan] * 10 + [0.8 + 0.1 * math.cos(phase + i / 20) for i in range(steps - 10)]
    return replace(trace, figure5=replace(trace.figure5, similarity=np.array(values)))


@pytest.fixture
def three_traces(tmp_path: Path) -> list[Path]:
    spec = load_model_spec("smollm2-135m")
    paths = []
    for i, (allocation, retriggers) in enumerate((("dense", 0), ("dart", 0), ("dart", 2))):
        trace = _with_curve(
            synth_trace(spec, 32, 300, retriggers, 0.7, allocation, seed=i, params=SMALL_T), phase=i
        )
        path = tmp_path / f"t{i}.pt"
        save_trace(trace, path)
        paths.append(path)
    return paths


def test_figure5_writes_the_same_png_every_time(run_cli, three_traces: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = []
    for name in ("a.png", "b.png"):
        out = tmp_path / name
        dense, static, dart = (str(p) for p in three_traces)
        result = run_cli(
            "report", "figure5", "--dense", dense, "--static", static, "--dart", dart, "--out", str(out)
        )
        assert result.code == 0, result.err
        outputs.append(out.read_bytes())
    assert outputs[0].startswith(PNG_SIGNATURE) and len(outputs[0]) > 10_000
    assert outputs[0] == outputs[1]


def test_figure5_marks_retriggers(three_traces: list[Path]) -> None:
    from dartsim.trace import load_trace

    curves = [("x", load_trace(p)) for p in three_traces]
    without = figure5_png(curves[:2], "t")
    with_marks = figure5_png(curves, "t")
    assert without != with_marks


def test_retrigger_rates_are_counted_per_1k_generated_tokens(three_traces: list[Path]) -> None:
    from dartsim.trace import load_trace

    rows = retrigger_rows(three_traces, [load_trace(p) for p in three_traces])
    assert [r["retriggers"] for r in rows] == [0, 0, 2]
    assert rows[2]["per_1k_tokens"] == pytest.approx(2 * 1000 / 300, abs=0.01)
    assert rows[0]["mean_keep"] is None and rows[2]["mean_keep"] < 0.5


def test_retriggers_command_formats(run_cli, three_traces: list[Path]) -> None:  # type: ignore[no-untyped-def]
    md = run_cli("report", "retriggers", *map(str, three_traces))
    assert md.code == 0 and "| t2.pt |" in md.out
    csv = run_cli("report", "retriggers", *map(str, three_traces), "--format", "csv")
    assert csv.out.count("\n") == 4


SHIPPED = sorted((REPO / "traces").glob("*.pt"))


@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
def test_shipped_retrigger_table_is_current(run_cli) -> None:  # type: ignore[no-untyped-def]
    """reports/retriggers.md: dartsim report retriggers traces/*.pt --out reports/retriggers.md"""
    args = [str(p.relative_to(REPO)) for p in SHIPPED]
    import os

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        fresh = run_cli("report", "retriggers", *args).out
    finally:
        os.chdir(cwd)
    assert fresh == (REPO / "reports" / "retriggers.md").read_text()


HOST_THEN = "traces/host-2026-11-23.yaml"
"""The machine's calibration on the day the shipped traces were recorded."""


@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
def test_host_check_report_is_current(run_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """reports/host-check.md: predicted (the machine's calibration when the traces were
    recorded, traces/host-2026-11-23.yaml) vs measured (shipped traces)."""
    monkeypatch.chdir(REPO)
    fresh = run_cli("report", "host-check", *[str(p.relative_to(REPO)) for p in SHIPPED], "--hw", HOST_THEN)
    assert fresh.code == 0, fresh.err
    assert fresh.out == (REPO / "reports" / "host-check.md").read_text()


def test_host_check_compares_measured_and_predicted_decode_steps(run_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    monkeypatch.chdir(REPO)
    args = ("traces/two-topic-dense.pt", "--hw", HOST_THEN, "--format", "json")
    rows = json.loads(run_cli("report", "host-check", *args).out)
    row = rows[0]
    from dartsim.trace import load_trace

    trace = load_trace(REPO / "traces" / "two-topic-dense.pt")
    decode = trace.steps.phase == 1
    assert row["measured_decode_ms"] == pytest.approx(float(trace.steps.time_s[decode].mean()) * 1e3)
    # the prediction is the replay of the same trace, dense at fp32 as it was recorded
    fp32 = ("--weight-dtype", "fp32", "--act-dtype", "fp32", "--kv-dtype", "fp32")
    replay = run_cli("replay", "traces/two-topic-dense.pt", "--hw", HOST_THEN, *fp32, "--format", "json")
    assert row["predicted_decode_ms"] == pytest.approx(json.loads(replay.out)["tpot_s"] * 1e3, rel=1e-9)


@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
def test_every_shipped_trace_loads_and_is_complete() -> None:
    from dartsim.trace import load_trace

    for path in SHIPPED:
        trace = load_trace(path)
        assert trace.complete and not trace.synthetic, path
        assert trace.generation.generated_len == 500, path


def _regeneration() -> Any:
    """scripts/regenerate_reports.py: the one table of report commands."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("regen", REPO / "scripts" / "regenerate_reports.py")
    assert spec is not None and spec.loader is not None
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    return regen


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
@pytest.mark.parametrize("name", ["sweep-70b.md", "mechanisms-70b.md"])
def test_shipped_report_is_current(run_cli, monkeypatch, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """The report made by its command in scripts/regenerate_reports.py equals the shipped one."""
    monkeypatch.chdir(REPO)
    argv = dict(_regeneration().REPORTS)[name]
    fresh = tmp_path / name
    result = run_cli(*(str(fresh) if a == "OUT" else a for a in argv))
    assert result.code == 0, result.err
    assert fresh.read_text() == (REPO / "reports" / name).read_text()


def test_mechanisms_report_shows_launch_costs_and_the_stack_sensitivity() -> None:
    """Each mechanism made ideal never slows the step; under a CUDA-graph stack DART's
    speedup is higher than under the eager TensorRT-LLM 0.9 as fitted, and host-bound
    PyTorch eager flattens it."""
    from dartsim.report.mechanisms import breakdown, sensitivity
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Precision

    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    b = breakdown(spec, hw, 1, Precision())
    assert all(r["cost_s"] >= 0 for r in b["rows"]) and b["all_ideal_s"] < b["full_s"]
    launch = next(r for r in b["rows"] if r["mechanism"].startswith("kernel launch"))
    assert launch["cost_s"] > 0.02 * b["full_s"] and b["stack"] == "vllm"
    rows = {r["variant"].split(" ")[0]: r["speedup"] for r in sensitivity(spec, hw, 1, 0.3, Precision())}
    assert rows["trtllm-graphs"] > rows["trtllm-0.9"] > rows["pytorch-eager"] >= 1.0
    assert rows["vllm"] > rows["vllm-v0"]


@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
def test_host_check_flags_a_noisy_measurement(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.trace import load_trace, save_trace

    trace = load_trace(REPO / "traces" / "two-topic-dense.pt")
    times = trace.steps.time_s.copy()
    times[1::3] *= 6.0  # a third of the decode steps slowed by other load
    busy = tmp_path / "busy.pt"
    save_trace(replace(trace, steps=replace(trace.steps, time_s=times)), busy)
    dense = str(REPO / "traces" / "two-topic-dense.pt")
    report = run_cli("report", "host-check", dense, str(busy), "--hw", str(REPO / HOST_THEN)).out
    assert "Noisy measurements" in report
    noted = report.split("Noisy measurements", 1)[1]
    assert "busy.pt" in noted and "two-topic-dense.pt" not in noted


def test_the_regeneration_script_covers_every_shipped_report() -> None:
    """scripts/regenerate_reports.py rebuilds every report in one step: nothing in reports/
    is left out (JSON payloads and plots are written by the commands that make the
    reports; the authors'-code check needs their repository)."""
    regen = _regeneration()
    covered = {name for name, _ in regen.REPORTS + regen.SLOW}
    shipped = {
        p.name
        for p in (REPO / "reports").iterdir()
        if p.suffix not in (".json", ".png")
        and p.name not in ("README.md", "authors-code-check.md", "fit-gpu.md")  # fit-gpu.md: a fit's record
    }
    assert shipped <= covered, sorted(shipped - covered)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped traces")
def test_shipped_serving_report_is_current(run_cli, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A serving report made by its command in scripts/regenerate_reports.py equals the shipped one."""
    monkeypatch.chdir(REPO)
    name = "serve-8b-l40s-static"
    argv = dict(_regeneration().REPORTS)[name]
    fresh = tmp_path / name
    result = run_cli(*(str(fresh) if a == "OUT" else a for a in argv))
    assert result.code == 0, result.err
    assert (fresh / "serve.md").read_text() == (REPO / "reports" / name / "serve.md").read_text()
