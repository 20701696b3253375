"""The drift-detector study: its quality measurement lines up with the dense model, its
criteria decide as stated, and `dartsim report detector` renders and re-renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dartsim.record.model import LoadedModel
from dartsim.record.prompts import SAMPLE_PROMPTS
from dartsim.study.criteria import DEFAULT_SPARSITY, choose, criteria_met
from dartsim.study.detector import Setting, measure_run

SHORT = (("tau", 5), ("reference_tokens", 10))


def _summary(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "detection_rate": 0.3, "kl_lift": 3.0, "first_check_share": 0.2, "retriggers_per_1k": 2.0,
        "kl": 0.1, "dense_fraction": 0.4,
    }  # fmt: skip
    base.update(values)
    return base


def test_criteria_decide_as_stated() -> None:
    assert criteria_met(_summary(), static_kl=0.5) == [True, True, True, True]
    assert criteria_met(_summary(detection_rate=0.9), 0.5)[0] is False
    assert criteria_met(_summary(kl_lift=None), 0.5)[1] is False  # no flagged or no calm window
    assert criteria_met(_summary(first_check_share=1.0), 0.5)[2] is False
    assert criteria_met(_summary(first_check_share=None, retriggers_per_1k=0.0), 0.5)[2] is True
    assert criteria_met(_summary(kl=0.4), static_kl=0.5)[3] is False  # 0.4 > 0.75 x 0.5


def test_the_default_is_the_qualifying_setting_with_the_fewest_dense_steps() -> None:
    def row(label: str, dense: float, ok: bool, sparsity: float = DEFAULT_SPARSITY) -> dict[str, object]:
        return {"label": label, "mode": "dart", "sparsity": sparsity, "criteria": [ok] * 4,
                "summary": _summary(dense_fraction=dense)}  # fmt: skip

    rows = [row("a", 0.5, True), row("b", 0.3, True), row("c", 0.1, False), row("d", 0.05, True, 0.5)]
    chosen = choose(rows)
    assert chosen is not None and chosen["label"] == "b"
    assert choose([row("c", 0.1, False)]) is None


@pytest.mark.slow
def test_a_dense_run_agrees_with_the_dense_pass_and_a_masked_one_does_not(smollm2: LoadedModel) -> None:
    prompt = SAMPLE_PROMPTS["two-topic"]
    dense = measure_run(smollm2, prompt, Setting("dense", values=SHORT, mode="dense"), 20).summary()
    # the same model on the same prefixes: the step-by-step logits equal the one-pass ones
    assert dense["agreement"] == 1.0 and dense["kl"] < 1e-6 and dense["dense_fraction"] == 1.0
    dart = measure_run(
        smollm2, prompt, Setting("dart", values=(*SHORT, ("sparsity", 0.7), ("c0", 1))), 20
    ).summary()
    assert dart["dense_fraction"] < 1.0 and dart["kl_masked"] > 1e-3
    assert 0.0 <= dart["detection_rate"] <= 1.0 and 0.0 <= dart["agreement"] <= 1.0


@pytest.mark.slow
def test_report_detector_writes_and_rerenders_identically(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    md, raw = tmp_path / "d.md", tmp_path / "d.json"
    result = run_cli("report", "detector", "--quick", "--gen-len", "16", "--prompts", "two-topic",
                     "--quiet", "--json", str(raw), "--out", str(md))  # fmt: skip
    assert result.code == 0, result.err
    payload = json.loads(raw.read_text())
    assert [r["label"] for r in payload["rows"]] == ["dense", "dart"]
    again = tmp_path / "again.md"
    assert run_cli("report", "detector", "--from-json", str(raw), "--out", str(again)).code == 0
    assert again.read_bytes() == md.read_bytes()
    assert "drift detection rate" in md.read_text() and "dense-step fraction" in md.read_text()
    # an interrupted study (only its first setting saved) resumes where it stopped
    partial = {**payload, "complete": False, "rows": payload["rows"][:1]}
    raw.write_text(json.dumps(partial))
    resumed = run_cli("report", "detector", "--quick", "--gen-len", "16", "--prompts", "two-topic",
                      "--json", str(raw), "--resume", "--out", str(again))  # fmt: skip
    assert resumed.code == 0, resumed.err
    assert "dense: two-topic" not in resumed.err and "dart: two-topic" in resumed.err
    assert json.loads(raw.read_text()) == payload and again.read_bytes() == md.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prompts", "nope"), "unknown prompt 'nope'"),
        (("--from-json", "missing.json"), "missing.json"),
        (("--resume",), "give --json"),
    ],
)
def test_report_detector_bad_input_is_one_line(  # type: ignore[no-untyped-def]
    run_cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("report", "detector", *args, "--out", str(tmp_path / "x.md"))
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.md").exists()


def test_report_detector_rejects_results_of_another_kind(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wrong = tmp_path / "w.json"
    wrong.write_text('{"study": "other"}')
    result = run_cli("report", "detector", "--from-json", str(wrong))
    assert result.code == 2 and "not the results of a detector study" in result.err


SHIPPED_STUDY = Path(__file__).resolve().parents[1] / "reports" / "detector.json"


def test_the_shipped_detector_report_is_its_saved_results_rendered(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """reports/detector.md: dartsim report detector --from-json reports/detector.json"""
    payload = json.loads(SHIPPED_STUDY.read_text())
    assert payload["complete"], "reports/detector.json is from an unfinished study"
    fresh = tmp_path / "detector.md"
    result = run_cli("report", "detector", "--from-json", str(SHIPPED_STUDY), "--out", str(fresh))
    assert result.code == 0, result.err
    assert fresh.read_text() == (SHIPPED_STUDY.parent / "detector.md").read_text()
