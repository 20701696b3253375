"""`dartsim report TRACE... --hw --models --out DIR`: one folder with the summary, tidy CSV
and plots; deterministic bytes; figures equal to what replay says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACE = str(REPO / "traces" / "two-topic-70.pt")


def test_report_folder_holds_summary_csv_and_plots_and_is_deterministic(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = run_cli(
            "report", TRACE, "--hw", "l40s", "--models", "llama-3.1-8b", "--out", str(out), "--quiet"
        )
        assert result.code == 0, result.err
    names = sorted(p.name for p in first.iterdir())
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) >= 6 and {"summary.md", "results.csv"} <= set(names)
    assert all((first / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    summary = (first / "summary.md").read_text()
    assert "llama-3.1-8b (retargeted)" in summary and "| llama-3.1-8b | attention |" in summary


def test_report_figures_equal_what_replay_says(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r"
    assert (
        run_cli(
            "report", "run", TRACE, "--hw", "l40s", "--models", "llama-3.1-8b", "--out", str(out), "--quiet"
        ).code
        == 0
    )
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert list(rows[0]) == ["model", "run", "stack", "scope", "component", "metric", "value", "unit"]
    assert {r["stack"] for r in rows} == {"vllm"}
    cell = {(r["model"], r["run"], r["scope"], r["component"], r["metric"]): r["value"] for r in rows}
    replay = json.loads(
        run_cli("replay", TRACE, "--hw", "l40s", "--model", "llama-3.1-8b", "--tp", "auto", "--compare-dense",
                "--format", "json", "--quiet").out
    )  # fmt: skip
    key = ("llama-3.1-8b", "run", "total", "attention", "share_time")
    assert float(cell[key]) == replay["components"]["attention"]["share_time"]
    key = ("llama-3.1-8b", "dense", "total", "mlp", "bytes")
    assert int(cell[key]) == replay["dense"]["components"]["mlp"]["bytes"]
    assert float(cell[("llama-3.1-8b", "run", "total", "all", "speedup_vs_dense")]) == replay["speedup"]


def test_report_shorthand_and_bad_input(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("report", TRACE, "--hw", "l40s", "--out", str(blocker))
    assert result.code == 2 and "is not a folder" in result.err and result.err.count("\n") == 1
    missing = run_cli("report", str(tmp_path / "none.pt"), "--hw", "l40s", "--out", str(tmp_path / "o"))
    assert missing.code == 2 and "no such trace file" in missing.err
    assert not (tmp_path / "o").exists()


def test_two_models_with_one_display_name_are_refused(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """They would overwrite each other's plots and give rows no one can tell apart."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / "llama-3.1-8b.json")
        shutil.copy(repo / "models_cfg" / "llama-3.1-8b.json", copies[-1])
    trace = str(repo / "traces" / "two-topic-70.pt")
    for models in ("llama-3.1-8b,llama-3.1-8b", f"{copies[0]},{copies[1]}"):
        out = tmp_path / "out"
        r = run_cli("report", trace, "--hw", "l40s", "--models", models, "--out", str(out), "--quiet")
        assert r.code == 2 and "named twice" in r.err and len(r.err.strip().splitlines()) == 1
        assert not out.exists()


def test_on_hardware_with_energy_the_folder_shows_energy_per_token(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = Path(__file__).resolve().parents[1]
    trace = str(repo / "traces" / "two-topic-70.pt")
    out = tmp_path / "rep"
    r = run_cli("report", trace, "--hw", "h100-sxm", "--models", "llama-3.1-8b", "--out", str(out), "--quiet")
    assert r.code == 0, r.err
    assert (out / "energy.png").read_bytes()[:4] == b"\x89PNG" and (out / "energy-vs-speedup.png").exists()
    replay = run_cli("replay", trace, "--hw", "h100-sxm", "--model", "llama-3.1-8b", "--compare-dense",
                     "--format", "json", "--quiet")  # fmt: skip
    doc = json.loads(replay.out)
    row = f"| llama-3.1-8b | {doc['dense']['energy_per_token_j']:.4f} | {doc['energy_per_token_j']:.4f} |"
    assert row in (out / "summary.md").read_text()
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert any(x["metric"] == "energy_j" and x["component"] == "mlp" for x in rows)
