"""`dartsim record --policy`, replaying policy traces, and `dartsim report policies`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dartsim.policies import policies
from dartsim.replay.charges import head_counts
from dartsim.specs.model import load_model_spec
from dartsim.trace.types import PolicySection

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_record_help_lists_every_policy_with_its_line(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("record", "--help")
    assert result.code == 0
    for info in policies().values():
        assert info.summary[:40] in " ".join(result.out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--policy", "griffin"), "invalid choice: 'griffin'"),
        (("--policy", "dejavu", "--sparsity", "1.5"), "--sparsity must lie in [0, 1)"),
        (("--policy", "dsgp", "--head-sparsity", "-0.1"), "--head-sparsity must lie in [0, 1)"),
        (("--policy", "kgds", "--core-fraction", "2"), "--core-fraction must lie in [0, 1]"),
        (("--policy", "wanda", "--mode", "static"), "--mode does not apply to --policy wanda"),
        (("--policy", "static", "--head-sparsity", "0.5"), "--head-sparsity does not apply to --policy"),
        (("--policy", "2:4", "--sparsity", "0.3"), "--sparsity does not apply to --policy 2:4"),
        (("--policy", "dart", "--predictor-rank", "8"), "--predictor-rank does not apply to --policy dart"),
    ],
)
def test_bad_policy_options_are_one_line_errors(
    run_cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "t.pt"
    result = run_cli("record", *args, "--out", str(out), "--quiet")
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_record_a_policy_then_replay_it_retargeted(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "static.pt"
    result = run_cli(
        "record",
        "--policy",
        "static",
        "--sparsity",
        "0.5",
        "--max-new-tokens",
        "4",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.code == 0, result.err
    info = run_cli("trace", "info", str(out))
    assert "policy           static (sparsity 0.5)" in info.out
    replay = run_cli(
        "replay", str(out), "--hw", "l40s", "--model", "llama-3.1-8b", "--compare-dense", "--format", "json"
    )
    assert replay.code == 0, replay.err
    data = json.loads(replay.out)
    assert data["speedup"] > 1.0
    bundle = run_cli(
        "report", str(out), "--hw", "l40s", "--models", "llama-3.1-8b", "--out", str(tmp_path / "b")
    )
    assert bundle.code == 0, bundle.err
    assert "policy static, sparsity 0.5" in (tmp_path / "b" / "summary.md").read_text()
    dense = tmp_path / "dense.pt"
    assert (
        run_cli("record", "--policy", "dense", "--max-new-tokens", "3", "--out", str(dense), "--quiet").code
        == 0
    )
    mixed = run_cli("replay", str(out), str(dense), "--hw", "l40s")
    assert mixed.code == 2 and "different policies" in mixed.err


def test_retargeted_heads_keep_the_same_fractions() -> None:
    # SmolLM2: 9 query heads in 3 KV groups of 3. Keeping heads 0-3 keeps 4 query heads and
    # touches groups 0 and 1: (4, 2). On Llama-3.1-8B (32 heads, 8 KV heads) that is
    # round(4/9 * 32) = 14 query heads and round(2/3 * 8) = 5 KV heads.
    masks = np.zeros((30, 9), dtype=bool)
    masks[:, :4] = True
    policy = PolicySection("dsgp", {}, masks, "dense", np.ones(30))
    source = SimpleNamespace(num_heads=9, num_kv_heads=3)
    target = load_model_spec("llama-3.1-8b")
    layer_of = [0] * target.num_layers
    assert head_counts(policy, source, target, layer_of, retarget=True) == ((14, 5),) * 32  # type: ignore[arg-type]
    own = load_model_spec("smollm2-135m")
    assert head_counts(policy, source, own, list(range(30)), retarget=False) == ((4, 2),) * 30  # type: ignore[arg-type]
    every = replace(policy, head_masks=np.ones((30, 9), dtype=bool))
    assert head_counts(every, source, own, list(range(30)), False) is None  # type: ignore[arg-type]


def _payload() -> dict[str, Any]:
    return json.loads((REPORTS / "policies.json").read_text())


def test_policies_report_is_regenerated_from_its_data(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """reports/policies.md: dartsim report policies --from-json reports/policies.json; the
    Pareto plot comes out byte-identical twice (fonts and matplotlib versions differ between
    machines, so it is not compared with the shipped image)."""
    fresh, plots = tmp_path / "policies.md", [tmp_path / "a.png", tmp_path / "b.png"]
    for plot in plots:
        args = ("report", "policies", "--from-json", str(REPORTS / "policies.json"), "--plot", str(plot))
        result = run_cli(*args, "--out", str(fresh))
        assert result.code == 0, result.err
    assert fresh.read_text() == (REPORTS / "policies.md").read_text()
    assert plots[0].read_bytes() == plots[1].read_bytes() and plots[0].read_bytes()[:4] == b"\x89PNG"


def test_policies_report_covers_every_policy_target_and_quality_figure() -> None:
    payload = _payload()
    assert {r["policy"] for r in payload["rows"]} == set(policies())
    assert set(payload["targets"]) == {
        f"{m} @ {h}" for m in ("llama-3.1-8b", "llama-3.1-70b") for h in ("l40s", "h100-sxm")
    }
    dense = payload["rows"][0]
    assert dense["label"] == "dense" and dense["quality"]["mean_kl"] == 0.0
    assert dense["quality"]["top1_agreement"] == 1.0
    for row in payload["rows"][1:]:
        assert row["quality"]["mean_kl"] > 0.0  # every policy changes the model somewhere
        assert all(row["costs"][t]["speedup"] > 0 for t in payload["targets"])


def test_policies_report_errors_are_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = run_cli("report", "policies", "--targets", "llama-3.1-8b", "--out", str(tmp_path / "x.md"))
    assert bad.code == 2 and "MODEL@HW" in bad.err
    for value in ("abc", "0.5,1.5"):
        sparsities = run_cli("report", "policies", "--sparsities", value, "--out", str(tmp_path / "x.md"))
        assert sparsities.code == 2 and "--sparsities" in sparsities.err and "Traceback" not in sparsities.err
    unknown = run_cli("report", "policies", "--targets", "llama-9@l40s", "--out", str(tmp_path / "x.md"))
    assert unknown.code == 2 and "llama-9" in unknown.err
    assert not (tmp_path / "x.md").exists()
    detector = run_cli("report", "policies", "--from-json", str(REPORTS / "detector.json"))
    assert detector.code == 2 and "not the results of a policies study" in detector.err


def test_pareto_front_keeps_only_points_nothing_beats_on_both() -> None:
    from dartsim.report.plots import pareto_front

    points = [(1.0, 1.0), (1.2, 0.8), (1.1, 0.7), (1.5, 0.5), (1.5, 0.4), (1.2, 0.8)]
    # (1.1, 0.7) loses to (1.2, 0.8); (1.5, 0.4) loses to (1.5, 0.5); duplicates count once
    assert pareto_front(points) == [(1.0, 1.0), (1.2, 0.8), (1.5, 0.5)]
