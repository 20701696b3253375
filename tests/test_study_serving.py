"""Serving studies: the masks and load axes, capacity at the targets as a study point,
resume, parallel workers, and the shipped serving studies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dartsim.errors import UserError
from dartsim.study import runner
from dartsim.study.spec import load_study

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "traces" / "two-topic-70.pt"
SMALL = f"""
name: serving-small
workload:
  serving:
    requests: 40
    lengths: {{prompt_len: 64, gen_len: 24}}
    seed: 3
    slo: {{tpot_s: 0.004}}
models: [smollm2-135m]
hardware: [l40s]
tp: [1]
masks:
  - {{label: real, traces: [{TRACE}]}}
  - {{label: independent, synthetic: 0.7, pool: 4}}
load: [20, capacity]
"""


def _study(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.replace("load: [20, capacity]", "load: [0]"), "'load' values are positive rates"),
        (lambda s: s.replace("    slo: {tpot_s: 0.004}\n", ""), "load 'capacity' needs serving 'slo'"),
        (lambda s: s.replace("tpot_s: 0.004", "tpot_s: fast"), "must be a positive number of seconds"),
        (lambda s: s.replace("synthetic: 0.7", "synthetic: 1.5"), "a sparsity in (0, 1)"),
        (lambda s: s.replace("label: independent", "label: real"), "masks labels must be distinct"),
        (lambda s: s.replace("lengths: {prompt_len: 64, gen_len: 24}", "lengths: sharegpt"), "shipped"),
        (lambda s: s + "batch: [1, 2]\n", "'batch' does not apply to a serving workload"),
        (lambda s: s.replace("requests: 40", "requests: 0"), "'requests' must be a positive integer"),
        (lambda s: s.replace("    requests: 40\n", "    requests: 40\n    colour: blue\n"), "keys are"),
    ],
    ids=["zero rate", "capacity without targets", "target not a number", "sparsity", "labels", "lengths",
         "replay axis", "no requests", "unknown key"],
)  # fmt: skip
def test_a_bad_serving_study_is_one_line_before_any_point(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError) as err:
        load_study(_study(tmp_path, change(SMALL)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_serving_axes_on_a_replay_study_are_refused(tmp_path: Path) -> None:
    text = f"name: x\nworkload:\n  traces: [{TRACE}]\nmodels: [llama-3.1-8b]\nhardware: [l40s]\nload: [1]\n"
    with pytest.raises(UserError, match="'load' applies to serving workloads only"):
        load_study(_study(tmp_path, text))


@pytest.fixture(scope="module")
def small_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict], Path]:  # type: ignore[type-arg]
    folder = tmp_path_factory.mktemp("study")
    study = load_study(_study(folder))
    return study, runner.run_study(study, folder / "out", jobs=1), folder


def test_each_point_serves_at_its_rate_or_at_its_capacity(small_results, run_cli) -> None:  # type: ignore[no-untyped-def]
    study, results, _ = small_results
    assert len(study["points"]) == 4
    rows = {(r["point"]["masks"]["label"], r["point"]["load"]): r["row"] for r in results}
    at_rate = rows[("real", 20)]
    assert at_rate["rate_per_s"] == 20 and at_rate["capacity_rate_per_s"] is None
    # the same figures as `dartsim serve` with the same requests and masks
    served = run_cli(
        "serve", "--model", "smollm2-135m", "--hw", "l40s", "--tp", "1", "--rate", "20", "--requests", "40",
        "--prompt-len", "64", "--gen-len", "24", "--seed", "3", "--masks", str(TRACE), "--compare-dense",
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert served.code == 0, served.err
    s = json.loads(served.out)
    assert at_rate["tpot_p99_s"] == pytest.approx(s["tpot_s"]["p99"], rel=1e-12)
    assert at_rate["dense_ttft_p99_s"] == pytest.approx(s["dense"]["ttft_s"]["p99"], rel=1e-12)
    assert at_rate["mean_kept_fraction"] == pytest.approx(s["mean_kept_fraction"], rel=1e-12)
    cap = rows[("real", "capacity")]
    assert cap["capacity_rate_per_s"] > 0 and cap["rate_per_s"] == cap["capacity_rate_per_s"]
    assert cap["tpot_p99_s"] <= 0.004  # the run at capacity meets the target
    assert cap["capacity_vs_dense"] == pytest.approx(
        cap["capacity_rate_per_s"] / cap["dense_capacity_rate_per_s"]
    )
    # dense capacity does not depend on the masks
    assert cap["dense_capacity_rate_per_s"] == rows[("independent", "capacity")]["dense_capacity_rate_per_s"]


def test_a_finished_serving_study_resumes_without_running_and_renders(
    small_results, monkeypatch, run_cli
) -> None:  # type: ignore[no-untyped-def]
    _study, _results, folder = small_results
    calls: list[object] = []
    monkeypatch.setattr("dartsim.study.serving.run_serving_point", lambda *a: calls.append(a))
    out = folder / "out"
    r = run_cli("study", str(folder / "study.yaml"), "--out", str(out), "--quiet", "--jobs", "1")
    assert r.code == 0, r.err
    assert calls == [], "a finished study runs nothing again"
    text = (out / "study.md").read_text()
    assert "| masks | load |" in text and "capacity vs dense" in text
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header.startswith("model,hardware,stack,tp,precision,masks,load,stack_used")
    assert (out / "speedup.png").read_bytes()[:4] == b"\x89PNG"


def test_serving_points_in_parallel_give_the_serial_results(small_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.report.study_report import results_csv

    study, serial, _ = small_results
    parallel = runner.run_study(study, tmp_path / "par", jobs=2)
    assert results_csv(parallel) == results_csv(serial)


SHIPPED = sorted((REPO / "studies").glob("serving-*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_serving_study_reports_render_from_their_saved_points(
    run_cli, tmp_path: Path, path: Path
) -> None:  # type: ignore[no-untyped-def]
    """reports/study-NAME/ keeps its points (each a capacity search of minutes); the report
    rendered from them equals the shipped one, and no point is missing or stale (a stale
    point's key would not match and the run would redo it, caught by the monkeypatch-free
    count below)."""
    shipped = REPO / "reports" / f"study-{path.stem}"
    out = tmp_path / path.stem
    shutil.copytree(shipped / "points", out / "points")
    study = load_study(path)
    assert {p.stem for p in (out / "points").glob("*.json")} == {
        __import__("dartsim.study.spec", fromlist=["point_key"]).point_key(p) for p in study["points"]
    }, "the shipped points do not match the study file: regenerate the report"
    assert run_cli("study", str(path), "--out", str(out), "--quiet").code == 0
    for name in ("study.md", "results.csv"):
        assert (out / name).read_text() == (shipped / name).read_text(), f"{shipped / name} is stale"


@pytest.mark.slow
def test_a_shipped_serving_point_recomputes_to_its_saved_row() -> None:
    """The cheapest shipped capacity point, run again, equals what was saved."""
    path = REPO / "studies" / "serving-capacity-8b-l40s.yaml"
    study = load_study(path)
    point = next(p for p in study["points"] if p["masks"]["label"] == "dart-first-mask")
    from dartsim.study.spec import point_key

    saved = json.loads(
        (REPO / "reports" / f"study-{path.stem}" / "points" / f"{point_key(point)}.json").read_text()
    )
    fresh = runner.run_point(point)
    assert fresh["row"] == pytest.approx(saved["row"])


def test_a_fresh_run_and_a_resumed_one_render_the_same_bytes(small_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Saved points come back with sorted keys: the report must not depend on key order."""
    from dartsim.report.study_report import study_markdown

    study, fresh, folder = small_results
    resumed = runner.run_study(study, folder / "out", jobs=1)
    assert study_markdown(study, resumed) == study_markdown(study, fresh)
