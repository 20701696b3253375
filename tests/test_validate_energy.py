"""`dartsim validate --energy`: measured joules and watts beside dartsim serve's energy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dartsim.validate import energy as ve

DOC, ROWS = ve.load()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped mapping over the rows at max_num_seqs 8 and 16 only."""
    import csv
    import io

    folder = tmp_path_factory.mktemp("energy")
    keep = [r for r in ROWS if r["batch_or_concurrency"].startswith(("max_num_seqs=8 ", "max_num_seqs=16 "))]
    out = io.StringIO()
    w = csv.DictWriter(out, list(ROWS[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    (folder / "rows.csv").write_text(out.getvalue())
    (folder / "m.yaml").write_text(yaml.safe_dump(dict(DOC, rows="rows.csv")))
    return folder / "m.yaml"


@pytest.fixture(scope="module")
def fitted(small: Path) -> dict:  # type: ignore[type-arg]
    return ve.evaluate(*ve.load(str(small)), fit=True)


@pytest.fixture(scope="module")
def plain(small: Path) -> dict:  # type: ignore[type-arg]
    return ve.evaluate(*ve.load(str(small)), fit=False)


def test_the_split_was_fixed_before_the_fit() -> None:
    assert DOC["split"]["calibration_models"] == ["meta-llama/Llama-3.1-8B-Instruct"]
    parts = {r["model"] for r in ROWS if ve._case(r, DOC) is not None}
    assert "meta-llama/Llama-3.1-70B-Instruct" in parts  # the held-out model is covered


def test_a_fit_outside_the_sources_band_is_reported_and_not_applied(fitted, plain) -> None:  # type: ignore[no-untyped-def]
    fit = fitted["fit"]
    assert fit is not None and fit["field"] == "energy.static_w"
    low, high = fit["band_w"]
    inside = low <= fit["fitted_w"] <= high
    assert fit["applied"] == inside
    same = [a["predicted"] == b["predicted"] for a, b in zip(fitted["rows"], plain["rows"], strict=True)]
    assert all(same) == (not inside)


def test_rows_are_serve_figures_of_the_same_run(plain) -> None:  # type: ignore[no-untyped-def]
    row = next(r for r in plain["rows"] if r["metric"] == "avg_power_w" and r["devices"] == 4)
    case = ("llama-3.1-70b", "h100-sxm", 4, row["max_num_seqs"], row["output_tokens"])
    payload = ve.simulate(case, DOC)
    assert row["predicted"] == pytest.approx(payload["avg_power_w"] * 4)
    seqs = row["max_num_seqs"]
    j = next(
        r for r in plain["rows"]
        if r["metric"] == "joules_per_output_token" and r["devices"] == 4 and r["max_num_seqs"] == seqs
    )  # fmt: skip
    assert j["predicted"] == pytest.approx(payload["energy_per_token_j"])
    assert all(
        r["part"] == ("calibration" if r["model"] == "llama-3.1-8b" else "held-out") for r in plain["rows"]
    )


def test_validate_energy_cli_is_deterministic_and_reports_both_parts(  # type: ignore[no-untyped-def]
    run_cli, small: Path, tmp_path: Path
) -> None:
    outs = []
    for name in ("a.json", "b.json"):
        r = run_cli(
            "validate",
            "--energy",
            "--data",
            str(small),
            "--fit-static",
            "--format",
            "json",
            "--quiet",
            "--out",
            str(tmp_path / name),
        )
        assert r.code == 0, r.err
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    doc = json.loads(outs[0])
    assert doc["parts"]["held-out"]["rows"] > 0 and doc["parts"]["calibration"]["rows"] > 0
    md = run_cli("validate", "--energy", "--data", str(small), "--quiet")
    assert "## What the model misses" in md.out and "**held out**: median |error|" in md.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fit-static"], "--fit-static applies to --energy"),
        (["--energy", "--serving"], "separate validations"),
    ],
)
def test_bad_energy_validation_options_are_one_line(run_cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("validate", *args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1


def test_a_mapping_file_of_another_format_is_refused(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "m.yaml"
    bad.write_text(yaml.safe_dump({"format": "other"}))
    r = run_cli("validate", "--energy", "--data", str(bad), "--quiet")
    assert r.code == 2 and "not a dartsim energy-validation file" in r.err


@pytest.mark.slow
def test_the_shipped_energy_validation_report_is_current(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = Path(__file__).resolve().parents[1]
    fresh = tmp_path / "validation-energy.md"
    r = run_cli("validate", "--energy", "--fit-static", "--quiet", "--out", str(fresh))
    assert r.code == 0, r.err
    assert fresh.read_text() == (repo / "reports" / "validation-energy.md").read_text()
