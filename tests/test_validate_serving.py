"""`dartsim validate --serving`: published serving figures beside `dartsim serve`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from dartsim.validate import serving

SHIPPED = serving.load_mapping()

# A few shipped rows, chosen to exercise every path: an online TensorRT-LLM row group (no arrival
# process stated: assumed Poisson; request_per_s skipped), an LMDeploy closed loop at one user (its
# itl_p99 skipped), a GH200 row (no preset) and a ShareGPT row (skipped source).
PICK = (
    lambda f: (
        f["source_id"] == "trtllm_perf_overview_v017_online"
        and f["device"] == "H100 80GB HBM3"
        and f["model"] == "meta-llama/Llama-3.1-8B"
        and f["input_len"] == "467"
        and f["output_len"] == "16"
        and f["rate_req_s"] == "2"
    ),
    lambda f: (
        f["source_id"] == "lmdeploy_a100_fp16_v010a1"
        and "Llama-2-7b" in f["model"]
        and f["input_len"] == "128"
        and f["output_len"] == "128"
        and f["concurrency"] == "1"
    ),
    lambda f: f["source_id"] == "trtllm_perf_overview_v017" and f["device"] == "GH200 480GB",
    lambda f: f["source_id"] == "sglang_bench_vllm060" and f["metric"] == "ttft_p50_s",
)


@pytest.fixture(scope="module")
def small_mapping(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped mapping over a handful of the shipped rows (one of each kind), 100 requests
    per open-loop run."""
    folder = tmp_path_factory.mktemp("serving")
    rows_path = Path(SHIPPED.path).parent / SHIPPED.doc["rows"]
    reader = csv.DictReader(io.StringIO(rows_path.read_text(encoding="utf-8")))
    header = list(reader.fieldnames or [])
    chosen, seen = [], set()
    for row in reader:
        for i, pick in enumerate(PICK):
            if pick(row) and not (i >= 2 and i in seen):  # one row each of the last two
                seen.add(i)
                if row["source_id"] == "trtllm_perf_overview_v017_online":
                    row["num_requests"] = "100"
                chosen.append(row)
                break
    assert seen == set(range(len(PICK))), "the fixture rows are no longer in rows.csv"
    out = io.StringIO()
    w = csv.DictWriter(out, header, lineterminator="\n")
    w.writeheader()
    w.writerows(chosen)
    (folder / "rows.csv").write_text(out.getvalue(), encoding="utf-8")
    doc = dict(SHIPPED.doc, rows="rows.csv")
    (folder / "mapping.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder / "mapping.yaml"


def test_split_was_fixed_before_any_fit_and_holds_every_other_source_out() -> None:
    # the declared split: only the TensorRT-LLM online table, looked at while building serve
    assert SHIPPED.split["calibration_sources"] == ["trtllm_perf_overview_v017_online"]
    assert SHIPPED.split["fit"] == "none"
    parts = {r.fields["source_id"]: SHIPPED.part(r.fields["source_id"]) for r in SHIPPED.rows}
    assert {s for s, p in parts.items() if p == "calibration"} == {"trtllm_perf_overview_v017_online"}
    assert sum(p == "held-out" for p in parts.values()) >= 5


def test_every_shipped_row_is_simulated_or_has_a_reason() -> None:
    cases, reasons = set(), {}
    for row in SHIPPED.rows:
        reason = serving._skip_reason(row, SHIPPED)
        if reason is None:
            case = serving._case(row, SHIPPED)
            assert case.requests >= 1 and case.input_tokens >= 1 and case.output_tokens >= 1
            assert (case.rate_per_s is None) != (case.concurrency is None)
            cases.add(case)
        else:
            assert reason.strip()
            reasons[row.fields["source_id"]] = reason
    assert len(cases) > 300
    assert "sglang_bench_vllm060" in reasons and "ShareGPT" in reasons["sglang_bench_vllm060"]
    # every mapped figure is one the serving summary has
    from dartsim.serve.result import PERCENTILES

    figures = {"ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s"}
    for rule in SHIPPED.doc["metrics"].values():
        assert rule["figure"] in figures
        assert rule.get("statistic", "mean") in {"mean", *(f"p{p}" for p in PERCENTILES)}


def test_rows_are_compared_with_the_serve_command_run_the_same_way(run_cli, small_mapping: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("validate", "--serving", "--data", str(small_mapping), "--format", "json", "--quiet")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    by_metric = {row["metric"]: row for row in doc["rows"] if row["source"].endswith("_online")}
    assert set(by_metric) == {"ttft_mean_s", "itl_mean_s", "output_tokens_per_s"}
    ttft = by_metric["ttft_mean_s"]
    assert ttft["part"] == "calibration" and ttft["load"] == "2 req/s Poisson"
    served = run_cli(
        "serve", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--tp", "1", "--stack", "trtllm-0.9",
        "--weight-dtype", "bf16", "--act-dtype", "bf16", "--kv-dtype", "bf16", "--rate", "2",
        "--requests", "100", "--prompt-len", "467", "--gen-len", "16", "--max-num-seqs", "2048",
        "--max-batched-tokens", "8192", "--admission", "reserve", "--seed", "0", "--format", "json",
        "--quiet",
    )  # fmt: skip
    assert served.code == 0, served.err
    s = json.loads(served.out)
    assert ttft["predicted"] == pytest.approx(s["ttft_s"]["mean"], rel=1e-12)
    assert by_metric["itl_mean_s"]["predicted"] == pytest.approx(s["tpot_s"]["mean"], rel=1e-12)
    assert by_metric["output_tokens_per_s"]["predicted"] == pytest.approx(s["throughput_tokens_per_s"])
    assert ttft["error"] == pytest.approx(ttft["predicted"] / ttft["measured"] - 1)
    # the LMDeploy closed loop is held out; one user, ten requests
    lm = [row for row in doc["rows"] if row["source"].startswith("lmdeploy")]
    assert lm and all(row["part"] == "held-out" and row["load"] == "1 users, 10 requests" for row in lm)
    assert {row["metric"] for row in lm} == {"ttft_mean_s", "itl_p50_s", "output_tokens_per_s"}
    assert doc["parts"]["held-out"]["rows"] == len(lm)


def test_rows_not_simulated_carry_their_reason(run_cli, small_mapping: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("validate", "--serving", "--data", str(small_mapping), "--format", "json", "--quiet")
    doc = json.loads(r.out)
    reasons = {(row["source"], row["metric"]): row["reason"] for row in doc["not_simulated"]}
    assert "no dartsim preset for device 'GH200 480GB'" in reasons.values()
    assert any("ShareGPT" in why for why in reasons.values())
    assert any(m == "request_per_s" for _, m in reasons)
    assert any(m == "itl_p99_s" for _, m in reasons)
    # every fixture row is accounted for once
    total = sum(1 for _ in csv.DictReader(io.StringIO((small_mapping.parent / "rows.csv").read_text())))
    assert len(doc["rows"]) + len(doc["not_simulated"]) == total


def test_serving_validation_markdown_is_deterministic(run_cli, small_mapping: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outs = []
    for name in ("a.md", "b.md"):
        r = run_cli(
            "validate", "--serving", "--data", str(small_mapping), "--quiet", "--out", str(tmp_path / name)
        )
        assert r.code == 0, r.err
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    text = outs[0].decode()
    assert "## Summary" in text and "**held out**: median |error|" in text
    assert "### Rows not simulated" in text and "GH200" in text


def test_only_selects_sources_and_a_miss_lists_them(run_cli, small_mapping: Path) -> None:  # type: ignore[no-untyped-def]
    data = str(small_mapping)
    r = run_cli("validate", "--serving", "--data", data, "--only", "lmdeploy", "--format", "json",
                "--quiet")  # fmt: skip
    assert r.code == 0, r.err
    assert {row["source"] for row in json.loads(r.out)["rows"]} == {"lmdeploy_a100_fp16_v010a1"}
    miss = run_cli("validate", "--serving", "--data", str(small_mapping), "--only", "nosuch", "--quiet")
    assert miss.code == 2 and "matches no source" in miss.err and "lmdeploy_a100_fp16_v010a1" in miss.err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc, rows: doc.update(format="other"), "not a dartsim serving-validation file"),
        (lambda doc, rows: doc.pop("metrics"), "missing metrics"),
        (lambda doc, rows: rows.write_text("source_id,device\nx,y\n"), "missing column(s)"),
        (lambda doc, rows: rows.write_text(rows.read_text().splitlines()[0] + "\n"), "no rows"),
    ],
)
def test_a_bad_mapping_or_rows_file_is_one_line_and_exit_2(
    run_cli, small_mapping: Path, tmp_path: Path, edit, message
) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(small_mapping.read_text())
    rows = tmp_path / "rows.csv"
    rows.write_text((small_mapping.parent / "rows.csv").read_text())
    edit(doc, rows)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "report.md"
    r = run_cli("validate", "--serving", "--data", str(path), "--quiet", "--out", str(out))
    assert r.code == 2
    assert message in r.err and len(r.err.strip().splitlines()) == 1
    assert not out.exists()


def test_published_and_serving_together_is_refused(run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("validate", "--published", "--serving")
    assert r.code == 2 and "give one" in r.err


def test_parallel_cases_give_the_same_report(run_cli, small_mapping: Path) -> None:  # type: ignore[no-untyped-def]
    one = run_cli("validate", "--serving", "--data", str(small_mapping), "--format", "csv", "--quiet")
    two = run_cli("validate", "--serving", "--data", str(small_mapping), "--format", "csv", "--quiet",
                  "--jobs", "2")  # fmt: skip
    assert one.code == two.code == 0, two.err
    assert one.out == two.out and one.out.count("\n") > 5
