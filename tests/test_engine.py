"""The discrete-event device model: conservation, bounds, limit cases, memoisation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dartsim.dart.params import DartParams
from dartsim.engine import analytic
from dartsim.engine.machine import gather_efficiency, rates
from dartsim.engine.replay import ReplayConfig, build_steps, check_retarget
from dartsim.engine.run import choose_tp, run_steps
from dartsim.engine.sim import simulate_step
from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec, load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.trace import save_trace
from dartsim.trace.schema import unpack_mask
from dartsim.trace.synth import synth_trace
from dartsim.workload import Execution, Precision, StepShape, step_kernels

SMALL_T = DartParams(reference_tokens=20, tau=10)
"""A short reference so that short synthetic traces have room for re-triggers."""

UNLIMITED = 1e30


def ideal(hw: HardwareSpec, sram_bytes: int | None = None) -> HardwareSpec:
    """Unlimited network and link bandwidth, zero latencies and launch overhead,
    efficiency factors of 1."""
    return dataclasses.replace(
        hw,
        memory=dataclasses.replace(hw.memory, efficiency=1.0, latency_s=0.0),
        compute=dataclasses.replace(hw.compute, efficiency=1.0),
        noc=dataclasses.replace(hw.noc, link_bandwidth_bytes_per_s=UNLIMITED, hop_latency_s=0.0),
        link=dataclasses.replace(hw.link, bandwidth_bytes_per_s_per_direction=UNLIMITED, latency_s=0.0),
        launch_overhead_s=0.0,
        on_chip=dataclasses.replace(hw.on_chip, sram_bytes=sram_bytes or hw.on_chip.sram_bytes),
    )


CASES = [
    ("llama-3.1-8b", StepShape.decode(1, 512), 1, None, "compact"),
    ("llama-3.1-8b", StepShape.decode(64, 2048), 1, 0.3, "gather"),
    ("llama-3.1-8b", StepShape.prefill(1, 256), 1, 0.5, "compact"),
    ("llama-3.1-70b", StepShape.decode(8, 1024), 2, 0.3, "compact"),
]


def _kernels(model: str, shape: StepShape, tp: int, keep: float | None, mode: str):  # type: ignore[no-untyped-def]
    spec = load_model_spec(model)
    kept = None if keep is None else [round(keep * spec.intermediate_size)] * spec.num_layers
    return step_kernels(spec, shape, kept, execution=Execution(tp=tp, mask_apply=mode))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1].phase}-b{c[1].batch}-tp{c[2]}-{c[4]}")
@pytest.mark.parametrize("prefetch", [True, False])
def test_engine_events_conserve_bytes_flops_and_link_traffic(case, prefetch: bool) -> None:  # type: ignore[no-untyped-def]
    kernels = _kernels(*case)
    result = simulate_step(kernels, rates(load_hardware_spec("l40s")), tp=case[2], prefetch=prefetch)
    assert result.dram_bytes == sum(k.bytes for k in kernels)
    assert result.flops == sum(k.flops for k in kernels)
    assert result.link_bytes == sum(k.link_bytes for k in kernels)
    assert len(result.timings) == len(kernels)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1].phase}-tp{c[2]}-{c[4]}")
@pytest.mark.parametrize("hw_name", ["l40s", "h100-sxm"])
def test_no_kernel_beats_peak_bandwidth_or_peak_compute(case, hw_name: str) -> None:  # type: ignore[no-untyped-def]
    hw = load_hardware_spec(hw_name)
    kernels = _kernels(*case)
    result = simulate_step(kernels, rates(hw), tp=case[2])
    peak_bw = hw.memory.peak_bandwidth_bytes_per_s
    for timing in result.timings:
        k = timing.kernel
        span = timing.end_s - timing.first_s
        assert span >= k.bytes / peak_bw * (1 - 1e-12)
        if k.flops_matmul:
            assert span >= k.flops_matmul / hw.tensor_flops_per_s(k.compute_dtype) * (1 - 1e-12)
        assert span >= k.flops_vector / hw.compute.vector_flops_per_s * (1 - 1e-12)
    total_bytes = sum(k.bytes for k in kernels)
    assert result.time_s >= total_bytes / peak_bw


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1].phase}-tp{c[2]}-{c[4]}")
def test_without_prefetch_a_step_is_the_sum_of_kernel_rooflines(case) -> None:  # type: ignore[no-untyped-def]
    if case[4] == "gather":
        pytest.skip("gathered rows run below peak bandwidth by design")
    r = rates(ideal(load_hardware_spec("l40s")))
    kernels = _kernels(*case)
    result = simulate_step(kernels, r, tp=case[2], prefetch=False)
    expected = analytic.serial_time(kernels, r)
    assert result.time_s == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1].phase}-tp{c[2]}-{c[4]}")
def test_with_prefetch_and_unlimited_sram_a_step_lies_within_the_overlap_bounds(case) -> None:  # type: ignore[no-untyped-def]
    if case[4] == "gather":
        pytest.skip("gathered rows run below peak bandwidth by design")
    r = rates(ideal(load_hardware_spec("l40s"), sram_bytes=10**15))
    kernels = _kernels(*case)
    result = simulate_step(kernels, r, tp=case[2], prefetch=True)
    lower, upper = analytic.overlapped_bounds(kernels, r)
    assert lower * (1 - 1e-9) <= result.time_s <= upper * (1 + 1e-9)


def test_gather_efficiency_falls_for_short_rows() -> None:
    assert gather_efficiency(4096) > 0.98
    assert gather_efficiency(576) < gather_efficiency(4096)
    assert gather_efficiency(32) == pytest.approx(32 / 128)


@pytest.fixture(scope="module")
def smol_trace() -> dict:  # type: ignore[type-arg]
    return synth_trace(load_model_spec("smollm2-135m"), 64, 2000, 3, 0.6, params=SMALL_T)


@pytest.mark.slow
def test_memoised_and_unmemoised_replays_agree(smol_trace) -> None:  # type: ignore[no-untyped-def]
    spec = load_model_spec("smollm2-135m")
    steps = build_steps([smol_trace], spec, False)
    hw = load_hardware_spec("h100-sxm")
    memo = run_steps(steps, spec, hw, ReplayConfig(memoize=True))
    full = run_steps(steps, spec, hw, ReplayConfig(memoize=False))
    assert memo["totals"]["bytes"] == full["totals"]["bytes"]
    assert memo["totals"]["flops"] == full["totals"]["flops"]
    assert memo["totals"]["time_s"] == pytest.approx(full["totals"]["time_s"], rel=1e-3)
    assert memo["tpot_p99_s"] == pytest.approx(full["tpot_p99_s"], rel=1e-3)
    assert memo["simulated_steps"] < full["simulated_steps"] / 20


def test_replay_totals_equal_the_workload_model(smol_trace) -> None:  # type: ignore[no-untyped-def]
    """Conservation over a whole replay: every step's kernels from the workload model."""
    spec = load_model_spec("smollm2-135m")
    trace = synth_trace(spec, 16, 200, 1, 0.5, params=SMALL_T)
    steps = build_steps([trace], spec, False)
    result = run_steps(steps, spec, load_hardware_spec("l40s"), ReplayConfig(memoize=True))
    expected_bytes = expected_flops = 0
    for step in steps:
        shape = StepShape(step.phase, len(step.contexts), step.new_tokens, max(step.contexts), step.contexts)
        kernels = step_kernels(spec, shape, list(step.kept), execution=Execution(dart_observe=step.observe))
        expected_bytes += sum(k.bytes for k in kernels)
        expected_flops += sum(k.flops for k in kernels)
    mask_bytes = sum(r["bytes"] for r in result["retriggers"])
    assert result["totals"]["bytes"] == expected_bytes + mask_bytes
    assert result["totals"]["flops"] == expected_flops
    assert len(result["retriggers"]) == 2  # the first mask and one re-trigger


def test_batches_fetch_the_union_of_kept_neurons() -> None:
    spec = load_model_spec("smollm2-135m")
    a = synth_trace(spec, 16, 120, 0, 0.7, seed=1, params=SMALL_T)
    b = synth_trace(spec, 16, 120, 0, 0.7, seed=2, params=SMALL_T)
    steps = build_steps([a, b], spec, False)
    masked = next(s for s in steps if s.phase == "decode" and s.kept[0] < spec.intermediate_size)
    union = unpack_mask(a["epochs"]["masks"][0], 1536) | unpack_mask(b["epochs"]["masks"][0], 1536)
    assert list(masked.kept) == union.sum(dim=-1).tolist()
    assert all(k >= int(a["epochs"]["kept"][0][i]) for i, k in enumerate(masked.kept))
    assert len(masked.contexts) == 2


def test_retargeting_maps_keep_ratios_by_depth() -> None:
    source = load_model_spec("smollm2-135m")
    target = load_model_spec("llama-3.1-8b")
    trace = synth_trace(source, 16, 120, 0, 0.7, params=SMALL_T)
    retarget, name = check_retarget([trace], target)
    assert retarget and name == "smollm2-135m"
    steps = build_steps([trace], target, True)
    masked = next(s for s in steps if s.kept[0] < target.intermediate_size)
    ratios = trace["epochs"]["keep_ratio"][0]
    assert masked.kept[0] == round(float(ratios[0]) * 14336)
    assert masked.kept[-1] == round(float(ratios[-1]) * 14336)
    assert len(masked.kept) == 32


def test_tp_auto_picks_the_smallest_degree_that_fits() -> None:
    spec = load_model_spec("llama-3.1-70b")
    hw = load_hardware_spec("l40s")
    assert choose_tp(spec, hw, Precision(), "auto", 4096) == 2
    with pytest.raises(UserError, match="--tp 2 would fit"):
        choose_tp(spec, hw, Precision(), "1", 4096)
    with pytest.raises(UserError, match="--tp 3 does not divide the 64 attention heads"):
        choose_tp(spec, hw, Precision(), "3", 4096)
    assert choose_tp(load_model_spec("llama-3.1-8b"), hw, Precision(), "auto", 4096) == 1


@pytest.fixture
def synth_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.pt"
    save_trace(synth_trace(load_model_spec("smollm2-135m"), 32, 300, 2, 0.6, params=SMALL_T), path)
    return path


def test_replay_json_contract_and_determinism(run_cli, synth_file: Path) -> None:  # type: ignore[no-untyped-def]
    args = (
        "replay",
        str(synth_file),
        "--hw",
        "l40s",
        "--model",
        "llama-3.1-8b",
        "--format",
        "json",
        "--compare-dense",
        "--quiet",
    )
    first, second = run_cli(*args), run_cli(*args)
    assert first.code == 0, first.err
    assert first.out == second.out
    data = json.loads(first.out)
    for key in (
        "model",
        "hw",
        "tp",
        "batch",
        "tokens",
        "totals",
        "ttft_s",
        "tpot_s",
        "tokens_per_s",
        "layers",
        "retriggers",
        "dense",
        "speedup",
    ):
        assert key in data
    assert set(data["totals"]) >= {"bytes", "flops", "time_s"}
    layer = data["layers"][0]
    assert set(layer) >= {"layer", "attention", "mlp"} and set(layer["mlp"]) >= {"bytes", "flops", "time_s"}
    assert data["speedup"] > 1.0
    assert data["dense"]["totals"]["bytes"] > data["totals"]["bytes"]
    assert all({"step", "time_s"} <= set(r) for r in data["retriggers"])


def test_replay_writes_an_output_folder_and_a_perfetto_timeline(
    run_cli, synth_file: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    timeline = tmp_path / "t.json"
    result = run_cli(
        "replay",
        str(synth_file),
        "--hw",
        "h100-sxm",
        "--out",
        str(out),
        "--perfetto",
        str(timeline),
        "--perfetto-steps",
        "0:2",
        "--quiet",
    )
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} == {"replay.json", "summary.txt", "layers.csv", "retriggers.csv"}
    events = json.loads(timeline.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"DRAM", "NoC", "compute (tensor)"} <= names
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and all({"name", "ts", "dur", "pid", "tid"} <= set(e) for e in spans)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)
    assert sum(1 for e in spans if e["cat"] == "step") == 3


def test_simulate_follows_the_replay_contract(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "simulate",
        "--model",
        "llama-3.1-8b",
        "--hw",
        "h100-sxm",
        "--batch",
        "2",
        "--prompt-len",
        "64",
        "--gen-len",
        "120",
        "--sparsity",
        "0.5",
        "--allocation",
        "uniform",
        "--format",
        "json",
        "--quiet",
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["batch"] == 2 and data["synthetic"] and data["tokens"] == 240
    assert data["ttft_s"] > 0 and data["tpot_s"] > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--hw", "a100-sxm-80gb"], "has no fp8 tensor throughput"),
        (["--hw", "l40s", "--tp", "4"], "--tp 4 does not divide the 9 attention heads of smollm2-135m"),
        (["--hw", "l40s", "--model", "llama-2-7b"], "beyond llama-2-7b's 4096"),
        (["--hw", "tpu"], "unknown hardware 'tpu'"),
    ],
)
def test_bad_replay_input_is_one_line(run_cli, tmp_path: Path, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "long.pt"
    save_trace(synth_trace(load_model_spec("smollm2-135m"), 4000, 200, 0, 0.5, params=SMALL_T), path)
    result = run_cli("replay", str(path), "--quiet", *args)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and fragment in result.err


def test_gather_pays_per_step_compact_pays_at_the_retrigger(synth_file: Path) -> None:
    from dartsim.trace import load_trace

    spec = load_model_spec("llama-3.1-8b")
    steps = build_steps([load_trace(synth_file)], spec, True)
    hw = load_hardware_spec("l40s")
    compact = run_steps(steps, spec, hw, ReplayConfig(mask_apply="compact"))
    gather = run_steps(steps, spec, hw, ReplayConfig(mask_apply="gather"))
    assert sum(r["bytes"] for r in compact["retriggers"]) > sum(r["bytes"] for r in gather["retriggers"])
    assert gather["tpot_p50_s"] > compact["tpot_p50_s"]


def test_layer_times_are_shares_of_the_simulated_time() -> None:
    """Per-layer attention and MLP times apportion each step's time by kernel demand: they
    never add up to more than the run, and cover most of it for a large model."""
    spec = load_model_spec("llama-3.1-8b")
    trace = synth_trace(spec, 64, 300, 1, 0.7, params=SMALL_T)
    result = run_steps(build_steps([trace], spec, False), spec, load_hardware_spec("l40s"), ReplayConfig())
    parts = sum(row[p]["time_s"] for row in result["layers"] for p in ("attention", "mlp"))
    total = result["totals"]["time_s"]
    assert 0.7 * total < parts <= total
    first = result["layers"][0]
    assert first["attention"]["bound"] == "memory" and first["mlp"]["bound"] == "memory"
    # MLP weights are 4.2x the attention weights in 8B; at 70% sparsity the ratio shrinks.
    ratio = first["mlp"]["time_s"] / first["attention"]["time_s"]
    assert ratio > 1.0
    assert ratio < 4.2


def test_sweep_covers_the_grid_and_skips_what_cannot_run(run_cli, synth_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "sweep",
        str(synth_file),
        "--model",
        "llama-3.1-8b",
        "--hw",
        "l40s,a100-sxm-80gb,h100-sxm",
        "--tp",
        "1,3",
        "--mask-apply",
        "compact,gather",
        "--format",
        "json",
        "--quiet",
    )
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    # a100 lacks fp8 and tp=3 divides no head count: 2 devices x 1 degree x 2 modes remain
    assert [(r["hw"], r["tp"], r["mask_apply"]) for r in rows] == [
        ("l40s", 1, "compact"),
        ("l40s", 1, "gather"),
        ("h100-sxm", 1, "compact"),
        ("h100-sxm", 1, "gather"),
    ]
    assert "skipped a100-sxm-80gb" in result.err and "skipped l40s --tp 3" in result.err
    for row in rows:
        assert row["speedup"] == pytest.approx(row["dense_time_s"] / row["time_s"])
        assert row["bytes"] < row["dense_bytes"]
    single = run_cli(
        "replay",
        str(synth_file),
        "--model",
        "llama-3.1-8b",
        "--hw",
        "h100-sxm",
        "--format",
        "json",
        "--quiet",
    )
    assert json.loads(single.out)["totals"]["time_s"] == pytest.approx(rows[2]["time_s"])
    nothing = run_cli("sweep", str(synth_file), "--hw", "a100-sxm-80gb", "--quiet")
    assert nothing.code == 2 and "no point of the sweep fits" in nothing.err


def test_tensor_parallel_replay_charges_the_busiest_shard() -> None:
    import torch

    from dartsim.engine.replay import busiest_shard_kept

    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :3] = True  # all three kept neurons on shard 0 of 2
    mask[1, [0, 5]] = True  # one on each shard
    assert busiest_shard_kept(mask, 2).tolist() == [6, 2]
    spec = load_model_spec("llama-3.1-8b")
    trace = synth_trace(spec, 16, 120, 0, 0.7, params=SMALL_T)
    one = build_steps([trace], spec, False, tp=1)
    two = build_steps([trace], spec, False, tp=2)
    masked = next(i for i, s in enumerate(one) if s.kept[0] < spec.intermediate_size)
    assert all(b >= a for a, b in zip(one[masked].kept, two[masked].kept, strict=True))
    full = unpack_mask(trace["epochs"]["masks"][0], spec.intermediate_size)
    halves = full.reshape(32, 2, -1).sum(-1).max(-1).values * 2
    assert list(two[masked].kept) == halves.tolist()


def test_a_narrow_mesh_noc_becomes_the_bottleneck(run_cli) -> None:  # type: ignore[no-untyped-def]
    """The example mesh accelerator: its bisection (2 x 8 links x 256 GB/s = 4 TB/s) is
    wider than HBM, so DRAM binds; with 16x narrower links the network binds."""
    from dartsim.engine.machine import noc_capacity

    example = Path(__file__).resolve().parents[1] / "examples" / "hw" / "mesh-npu.yaml"
    hw = load_hardware_spec(str(example))
    bandwidth, latency = noc_capacity(hw)
    assert bandwidth == pytest.approx(2 * 8 * 256e9) and latency == pytest.approx(2e-9 * 16 / 3)
    narrow = dataclasses.replace(hw, noc=dataclasses.replace(hw.noc, link_bandwidth_bytes_per_s=16e9))
    kernels = _kernels("llama-3.1-8b", StepShape.decode(1, 512), 1, None, "compact")
    wide_t = simulate_step(kernels, rates(hw)).time_s
    narrow_result = simulate_step(kernels, rates(narrow))
    total = sum(k.bytes for k in kernels)
    assert wide_t < narrow_result.time_s
    assert narrow_result.time_s >= total / (2 * 8 * 16e9)
    assert any(t.bound == "network" for t in narrow_result.timings)
