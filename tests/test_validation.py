"""Calibration and validation: the published GPU set, the fit of calibrated fields, the
GEMM and streaming fits, `dartsim calibrate` and `dartsim validate` on this machine."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import pytest
import yaml

from dartsim.calibrate import published_gemm
from dartsim.calibrate.cpu import streaming_line
from dartsim.calibrate.gemm_fit import GemmSample, fit_gemm, predict_gemm_seconds
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.replay.run import run_steps
from dartsim.specs.dtypes import BF16, FP32
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.hardware_yaml import override
from dartsim.specs.model import load_model_spec
from dartsim.validate import fit_terms, published, published_fit


@pytest.fixture(scope="module")
def data() -> published.Dataset:
    return published.load_measurements()


def test_the_published_set_is_broad_and_cited(data: published.Dataset) -> None:
    rows = data.rows
    assert len(rows) >= 30
    publishers = {data.sources[r.source]["publisher"] for r in rows}
    assert len(publishers) >= 4
    assert len({r.device for r in rows}) >= 4
    assert {"ttft", "tpot"} <= {r.metric for r in rows}
    for r in rows:
        assert r.quote.strip() and data.sources[r.source]["url"].startswith("http")
    for part in ("calibration", "held-out"):
        assert sum(r.split == part for r in rows) >= 10


def test_the_split_follows_its_stated_rule(data: published.Dataset) -> None:
    """Held out: rows whose id hashes to a first hex digit 0-4, and every row of a
    never-fitted source or a flagged (source, device) (the rule the file states)."""
    assert "sha256(id)" in data.split["rule"]
    never = set(data.split["never_fitted"])
    flagged = {(f["source"], f["device"]) for f in data.split["flagged"]}
    assert never and flagged
    for r in data.rows:
        expected = (
            r.source in never
            or (r.source, r.device) in flagged
            or hashlib.sha256(r.id.encode()).hexdigest()[0] in "01234"
        )
        assert (r.split == "held-out") == expected, r.id


def test_the_set_reaches_beyond_batch_one_on_every_metric(data: published.Dataset) -> None:
    rows = data.rows
    assert sum(r.batch > 1 for r in rows) >= 1000 and max(r.batch for r in rows) >= 256
    assert {r.tp for r in rows if r.batch > 1} >= {1, 2, 4, 8}
    assert {r.metric for r in rows if r.batch > 1} == set(published.METRICS)
    assert {r.device for r in rows if r.batch > 1} >= {"h100-sxm", "a100-sxm-80gb", "h200", "l40s", "mi300x"}
    independent = {r.source for r in rows if r.batch > 1 and r.source != "trtllm-0.9.0"}
    assert len(independent) >= 5
    assert all(r.stack for r in rows)


def test_the_datasheet_rows_are_its_lines(data: published.Dataset) -> None:
    """Every TensorRT-LLM 0.9.0 row quotes its datasheet line, and its value is in it."""
    rows = [r for r in data.rows if r.source == "trtllm-0.9.0"]
    assert len(rows) > 2000
    for r in rows[::97]:
        assert r.quote.startswith("[code/ch10_inference") and " line " in r.quote
        numbers = []
        for f in r.quote.split("] ", 1)[1].replace('"', "").split(","):
            try:
                numbers.append(float(f))
            except ValueError:
                continue
        assert any(abs(x - r.value) <= 5e-5 for x in numbers), r.id  # tpot: rounded to 4 decimals


def test_batch_throughput_is_the_batch_rate(data: published.Dataset) -> None:
    """output_tokens_per_s is batch x output / e2e (every source defines it so)."""
    row = next(r for r in data.rows if r.metric == "output_tokens_per_s" and r.batch > 1)
    predictor = published.Predictor(load_hardware_spec(row.device))
    ttft, tpot = predictor.times(row)
    e2e = ttft + (row.output_tokens - 1) * tpot
    assert predictor.predict(row) == pytest.approx(row.batch * row.output_tokens / e2e)


def test_every_published_row_simulates_and_both_parts_are_reported(data: published.Dataset) -> None:
    from dartsim.report.validation import render_published

    rows = published.evaluate(data)
    assert len(rows) == len(data.rows)
    assert all(math.isfinite(r["predicted"]) and r["predicted"] > 0 for r in rows)
    text = render_published(rows, data.about, data.split, data.sources, "md")
    for part in ("calibration", "held-out", "never-fitted", "flagged"):
        assert f"**{part} (" in text
    assert "**FP16 / FP8 pairs**" in text and "### Rows not fitted, by batch size" in text
    assert text.rstrip().splitlines()[-1].startswith("held-out (flagged rows aside): median |error|")
    shipped = Path(__file__).resolve().parents[1] / "reports" / "validation-gpu.md"
    assert text == shipped.read_text(), (
        "reports/validation-gpu.md is stale: regenerate it (reports/README.md)"
    )


def test_the_tpot_shortcut_equals_a_full_replay(data: published.Dataset) -> None:
    """A row's mean decode step (mean of the first and last step) against every step
    simulated one by one."""
    row = next(
        r for r in data.rows if r.metric == "tpot" and r.model == "llama-2-7b" and r.output_tokens == 128
    )
    hw = load_hardware_spec(row.device)
    _, tpot = published.Predictor(hw).times(row)
    spec = load_model_spec(row.model)
    dense = tuple([spec.intermediate_size] * spec.num_layers)
    steps = [ReplayStep("prefill", row.input_tokens, (row.input_tokens,) * row.batch, dense, False)]
    steps += [
        ReplayStep("decode", 1, (c,) * row.batch, dense, False)
        for c in range(row.input_tokens + 1, row.input_tokens + 128)
    ]
    from dartsim.specs.stack import stack_for

    config = ReplayConfig(precision=row.prec, memoize=False, stack=stack_for(row.stack, hw))
    full = run_steps(steps, spec, hw, config)
    assert tpot == pytest.approx(full.tpot_s, rel=1e-3)


def _engine_rows(truth_hw, truth_stack):  # type: ignore[no-untyped-def]
    """Rows whose values the engine itself gives on a known device and stack."""
    shapes = [("llama-3.2-3b", 1, 1, 128, 2, "ttft"), ("llama-3.2-3b", 1, 8, 2048, 2, "ttft"),
              ("llama-3.2-3b", 1, 1, 128, 64, "tpot"), ("llama-3.1-8b", 2, 1, 128, 64, "tpot"),
              ("llama-3.1-8b", 4, 16, 512, 16, "tpot"), ("llama-3.1-8b", 2, 4, 1024, 2, "ttft"),
              ("llama-3.1-8b", 1, 64, 1024, 32, "tpot"),
              ("llama-3.2-3b", 1, 32, 256, 128, "e2e_latency")]  # fmt: skip
    rows = []
    for i, (model, tp, batch, inp, out, metric) in enumerate(shapes):
        for prec in ({"weight": "fp8", "activation": "fp16", "kv_cache": "fp8"},
                     {"weight": "fp16", "activation": "fp16", "kv_cache": "fp16"}):  # fmt: skip
            raw = {"id": f"r{i}-{prec['weight']}", "model": model, "tp": tp, "batch": batch,
                   "input_tokens": inp, "output_tokens": out, "metric": metric, "unit": "s", "value": 1.0,
                   "precision": prec, "split": "calibration", "stack": truth_stack.name, "source": "x",
                   "device": truth_hw.name}  # fmt: skip
            raw["value"] = published.Predictor(truth_hw, lambda _n, _h: truth_stack).predict(
                published.Row(raw)
            )
            rows.append(published.Row(raw))
    return rows


def test_the_fit_recovers_known_fields() -> None:
    """Rows made by the engine itself with known hardware and stack fields: the fit,
    started from other values, finds them again (FP8/FP16 pairs separate bytes from
    kernels, batches compute from launch, TP the all-reduce)."""
    from dartsim.specs.stack import override_stack, stack_for

    base = load_hardware_spec("h100-sxm")
    stack = stack_for("trtllm-0.9", base)
    truth_hw = override(base, {"memory.efficiency": 0.8, "compute.gemm.efficiency": 0.6}, "truth")
    truth_stack = override_stack(stack, {"launch.ops_per_kernel": 2.0, "launch.step_overhead_us": 300.0,
                                         "allreduce.call_us": 20.0}, "truth")  # fmt: skip
    rows = _engine_rows(truth_hw, truth_stack)
    start_hw = override(base, {"memory.efficiency": 0.95, "compute.gemm.efficiency": 0.9}, "start")
    fit = published_fit.fit_pair(rows, start_hw, stack, with_hardware=True)
    assert fit.ok and fit.rms_after < 0.01 < fit.rms_before
    assert fit.fields["memory.efficiency"] == pytest.approx(0.8, abs=0.03)
    assert fit.fields["compute.gemm.efficiency"] == pytest.approx(0.6, abs=0.05)
    assert fit.fields["launch.ops_per_kernel"] == pytest.approx(2.0, abs=0.2)
    assert fit.fields["allreduce.call_us"] == pytest.approx(20.0, abs=4.0)


def test_a_fit_at_the_edge_of_its_range_fails_and_is_not_shipped() -> None:
    """Rows that want a per-step cost beyond the searched range: the fit says so."""
    from dartsim.specs.stack import override_stack, stack_for

    hw = load_hardware_spec("h100-sxm")
    stack = stack_for("trtllm-0.9", hw)
    truth = override_stack(stack, {"launch.step_overhead_us": 90000.0}, "truth")
    rows = _engine_rows(hw, truth)
    fit = published_fit.fit_pair(rows, hw, stack, with_hardware=False)
    assert not fit.ok and "launch.step_overhead_us" in fit.at_edge


def test_the_fit_evaluator_is_the_engine(data: published.Dataset) -> None:
    """The fit's fast evaluation (precomputed kernel terms, the launch rules in numpy)
    equals the engine's prediction, row by row, for every kind of stack."""
    from dartsim.specs.stack import stack_for

    for device, name in [("h100-sxm", "trtllm-0.9"), ("h100-sxm", "vllm-v0"), ("mi300x", "rocm-vllm"),
                         ("a100-sxm-80gb", "lmdeploy"), ("h100-sxm", "nim")]:  # fmt: skip
        hw = load_hardware_spec(device)
        rows = [r for r in data.rows if r.device == device and r.stack == name][:40]
        fast, engine = fit_terms.check_evaluator(rows, hw, stack_for(name, hw))
        assert fast == pytest.approx(engine, rel=1e-9), (device, name)


def test_fitted_presets_say_so_and_keep_what_they_replaced() -> None:
    from dartsim.specs.stack import load_stack_spec

    hw = load_hardware_spec("h100-sxm")
    for field in ("memory.efficiency", "compute.gemm.efficiency"):
        assert field in hw.calibrated
        text = hw.sources[field]
        assert text.startswith(published_fit.FIT_PHRASE) and published_fit.WAS in text
        assert text.count(published_fit.WAS) == 1
    stack = load_stack_spec("trtllm-0.9")
    assert "h100-sxm" in stack.devices
    assert stack.sources["devices.h100-sxm"].startswith(published_fit.FIT_PHRASE)
    fitted = stack.for_device("h100-sxm")
    assert fitted.launch.ops_per_kernel == stack.devices["h100-sxm"]["launch.ops_per_kernel"]
    assert fitted.label == "trtllm-0.9 (fitted on h100-sxm)"
    for name, value in stack.devices["h100-sxm"].items():
        lo, hi = published_fit.RANGES[name]
        assert not published_fit._at_edge(value, lo, hi), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("quote"), "missing field 'quote'"),
        (lambda m: m.update(device="tpu-v9"), "is not a hardware preset ('tpu-v9')"),
        (lambda m: m.update(unit="tokens/s"), "does not fit metric"),
        (lambda m: m.update(split="maybe"), "must be one of calibration, held-out"),
        (lambda m: m.update(tp=3), "does not divide"),
    ],
)
def test_a_broken_measurement_file_is_one_line(run_cli, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(Path(published._default_path()).read_text())
    raw["measurements"] = raw["measurements"][:2]
    change(raw["measurements"][1])
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("validate", "--published", "--data", str(path))
    assert result.code == 2 and result.err.count("\n") == 1 and message in result.err


def test_the_gemm_fit_recovers_a_known_curve() -> None:
    hw = load_hardware_spec("cpu-host")
    truth = override(hw, {"compute.gemm.efficiency": 0.7, "compute.gemm.k_overhead": 300.0,
                          "compute.gemm.m_overhead": 20.0}, "truth")  # fmt: skip
    shapes = [(m, 1024, k) for m in (4, 32, 128, 512) for k in (256, 1024, 4096)]
    samples = [GemmSample(m, n, k, FP32, 1.0) for m, n, k in shapes]
    samples = [dataclasses.replace(s, seconds=predict_gemm_seconds(s, truth, 5e-6)) for s in samples]
    fit = fit_gemm(samples, hw, call_overhead_s=5e-6)
    assert fit.rms_log_error < 0.01
    assert fit.efficiency == pytest.approx(0.7, rel=0.05)
    assert fit.k_overhead == pytest.approx(300.0, rel=0.15)
    assert fit.m_overhead == pytest.approx(20.0, rel=0.15)


def test_the_gpu_gemm_curve_is_the_fit_of_its_cited_microbenchmarks() -> None:
    curve = published_gemm.fit_curve(load_hardware_spec("h100-sxm"))
    for name in ("h100-sxm", "h200", "a100-sxm-80gb", "l40s"):
        gemm = load_hardware_spec(name).compute.gemm
        assert gemm.k_overhead == pytest.approx(curve.k_overhead)
    h100 = load_hardware_spec("h100-sxm").compute.gemm
    assert (h100.tile_m, h100.tile_n) == published_gemm.HOPPER_TILE
    assert (
        f"efficiency {curve.efficiency} and k_overhead {curve.k_overhead}"
        in load_hardware_spec("h100-sxm").sources["compute.gemm"]
    )
    assert curve.rms_log_error < 0.05


def test_the_streaming_line_separates_startup_from_bandwidth() -> None:
    call = 4e-6
    samples = [(size, call + 30e-6 + size / 10e9) for size in (400_000, 1_300_000, 4_000_000, 64_000_000)]
    rate, startup = streaming_line(samples, call)
    assert rate == pytest.approx(10e9, rel=1e-6) and startup == pytest.approx(30e-6, rel=1e-6)


def test_a_noisy_startup_estimate_is_capped_and_says_so() -> None:
    from dartsim.calibrate.cpu import CpuMeasurements, preset
    from dartsim.calibrate.gemm_fit import GemmSample
    from dartsim.specs.dtypes import FP32

    call = 4e-6
    # a 200 us intercept: what a busy machine produced once on three GEMV sizes
    gemvs = [(size, call + 200e-6 + size / 10e9) for size in (400_000, 1_300_000, 4_000_000)]
    gemms = [GemmSample(m, 1024, 1024, FP32, 1e-5 * m) for m in (1, 16, 64, 256)]
    meas = CpuMeasurements(12e9, gemvs, gemms, call, 1e10, 5e-6, 1e-4, "", 2, 2, "2026-11-23", "2.13.0")
    doc, _ = preset(meas)
    assert doc["memory"]["latency_ns"] == 100_000.0
    assert "capped" in doc["memory"]["latency_ns_source"] and "200 us" in doc["memory"]["latency_ns_source"]


@pytest.mark.slow
def test_calibrate_writes_a_hardware_file_that_loads_and_validate_uses_it(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "host.yaml"
    result = run_cli("calibrate", "--device", "cpu", "--quick", "--quiet", "--out", str(out))
    assert result.code == 0, result.err
    hw = load_hardware_spec(str(out))
    from dartsim.specs.stack import default_stack

    stack = default_stack(hw)  # written beside it as host.stack.yaml, named by default_stack
    assert (tmp_path / "host.stack.yaml").is_file() and hw.default_stack == "host.stack.yaml"
    assert stack.launch.synchronous and stack.launch.host_issue_s > 0
    assert "dartsim calibrate --device cpu" in stack.sources["launch.host_issue_us"]
    assert "dartsim calibrate --device cpu" in hw.sources["memory"]
    assert "compute.gemm.k_overhead" in hw.calibrated
    report = tmp_path / "v.md"
    result = run_cli("validate", "--hw", str(out), "--quick", "--repeats", "1", "--only", "layer",
                     "--quiet", "--out", str(report))  # fmt: skip
    assert result.code == 0, result.err
    text = report.read_text()
    assert "llama-3.2-3b layer decode" in text and text.rstrip().splitlines()[-1].startswith(
        "worst |error|: "
    )


def test_calibrate_refuses_an_unwritable_destination_before_measuring(run_cli, tmp_path: Path) -> None:
    result = run_cli("calibrate", "--device", "cpu", "--out", str(tmp_path / "missing" / "x.yaml"))
    assert result.code == 2 and "does not exist" in result.err


def test_calibrate_cuda_without_a_gpu_is_one_line(run_cli, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA path is exercised by the next test")
    result = run_cli("calibrate", "--device", "cuda", "--base", "h100-sxm", "--out", str(tmp_path / "g.yaml"))
    assert result.code == 2 and "no CUDA device" in result.err


def test_calibrate_cuda_measures_a_gpu(run_cli, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    out = tmp_path / "gpu.yaml"
    result = run_cli(
        "calibrate", "--device", "cuda", "--base", "h100-sxm", "--quick", "--quiet", "--out", str(out)
    )
    assert result.code == 0, result.err
    hw = load_hardware_spec(str(out))
    from dartsim.specs.stack import default_stack

    assert default_stack(hw).launch.kernel_gap_s >= 0 and 0 < hw.memory.efficiency <= 1
    assert hw.compute.gemm.efficiency > 0 and BF16.name in hw.compute.tensor_flops_per_s
