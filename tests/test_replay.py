"""Replaying traces: memoisation, conservation over a run, batches, retargeting, TP, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dartsim.engine.machine import device
from dartsim.engine.replay_config import ReplayConfig
from dartsim.engine.sim import simulate_step
from dartsim.errors import UserError
from dartsim.policies.dart.params import DartParams
from dartsim.policies.dart.synth import synth_trace
from dartsim.replay.capacity import choose_tp
from dartsim.replay.run import run_steps
from dartsim.replay.steps import build_steps, check_retarget, expand
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.specs.stack import default_stack
from dartsim.trace import save_trace
from dartsim.workload import Precision, StepShape, step_kernels

SMALL_T = DartParams(reference_tokens=20, tau=10)
"""A short reference so that short synthetic traces have room for re-triggers."""


@pytest.mark.slow
def test_memoised_and_unmemoised_replays_agree() -> None:
    """Runs in closed form over a coarse context grid, from cached blocks, against every
    step simulated kernel by kernel (a batch of two, so that unions and a finishing
    sequence are covered; a grid of 128 tokens, so that runs cross many cells)."""
    spec = load_model_spec("smollm2-135m")
    traces = [synth_trace(spec, 64, n, 2, 0.6, seed=i, params=SMALL_T) for i, n in enumerate((700, 520))]
    steps = build_steps(traces, spec, False)
    hw = load_hardware_spec("h100-sxm")
    memo = run_steps(steps, spec, hw, ReplayConfig(memoize=True, context_grid=128))
    full = run_steps(steps, spec, hw, ReplayConfig(memoize=False))
    assert memo.totals.bytes == full.totals.bytes
    assert memo.totals.flops == full.totals.flops
    assert memo.totals.time_s == pytest.approx(full.totals.time_s, rel=1e-3)
    assert memo.tpot_p99_s == pytest.approx(full.tpot_p99_s, rel=1e-3)
    assert memo.step_times_s == pytest.approx(full.step_times_s, rel=2e-3)
    for a, b in zip(memo.layers, full.layers, strict=True):
        assert a.mlp.bytes == b.mlp.bytes and a.attention.flops == b.attention.flops
        assert a.mlp.time_s == pytest.approx(b.mlp.time_s, rel=2e-3)
    assert memo.simulated_steps < full.simulated_steps / 10


BLOCK_CASES = [
    ("llama-3.1-8b", "h100-sxm", 1, ("decode", 1, (512,)), False),
    ("llama-3.1-8b", "l40s", 1, ("prefill", 256, (256,)), True),
    ("llama-3.1-70b", "h100-sxm", 4, ("decode", 1, (900, 1700, 33)), False),
    ("llama-3.1-70b", "a100-sxm-80gb", 8, ("decode", 1, (4096,)), True),
    ("smollm2-135m", "cpu-host", 1, ("prefill", 64, (64,)), False),
    ("llama-3.1-70b", "h100-sxm", 2, ("decode", 1, (300, 2000)), False, "trtllm-0.9"),
    ("llama-3.1-8b", "h100-sxm", 1, ("prefill", 128, (128,)), True, "vllm"),
    ("llama-3.1-8b", "l40s", 1, ("decode", 1, (700,)), True, "pytorch-eager"),
]


@pytest.mark.parametrize("case", BLOCK_CASES, ids=lambda c: f"{c[0]}-{c[1]}-tp{c[2]}-{c[3][0]}")
def test_block_costing_equals_the_kernel_by_kernel_simulation(case) -> None:  # type: ignore[no-untyped-def]
    """Without a streamer a step is costed from cached blocks (additive launch: their sum;
    eager issue: the closed form over their kernel bodies); nothing changes."""
    from dartsim.engine.costing import StepCoster
    from dartsim.engine.replay_config import ReplayStep
    from dartsim.specs.dtypes import FP16, FP32
    from dartsim.specs.stack import stack_for

    model, hw_name, tp, (phase, new, contexts), observe, *named = case
    spec, hw = load_model_spec(model), load_hardware_spec(hw_name)
    formats = {"cpu-host": Precision(FP32, FP32, FP32), "a100-sxm-80gb": Precision(FP16, FP16, FP16)}
    prec = formats.get(hw_name, Precision())
    kept = tuple((spec.intermediate_size * (3 + i % 5)) // 10 // tp * tp for i in range(spec.num_layers))
    stack = stack_for(named[0], hw) if named else default_stack(hw)
    coster = StepCoster(spec, hw, ReplayConfig(tp=tp, precision=prec, stack=stack))
    assert coster.blockwise
    if named:
        assert not coster.additive(phase)  # eager issue: the closed form
    step = ReplayStep(phase, new, contexts, kept, observe)
    fast = coster.decomposed(step, contexts)
    full, _ = coster.simulate(step, contexts)
    assert fast.time_s == pytest.approx(full.time_s, rel=1e-9)
    assert (fast.bytes, fast.flops, fast.link_bytes) == (full.bytes, full.flops, full.link_bytes)
    assert (fast.layer_bytes == full.layer_bytes).all() and (fast.layer_flops == full.layer_flops).all()
    assert fast.layer_time == pytest.approx(full.layer_time, rel=1e-9)
    assert fast.layer_bound == full.layer_bound


def test_a_streamer_or_eager_issue_turns_block_costing_off() -> None:
    from dartsim.engine.costing import StepCoster

    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    assert StepCoster(spec, hw, ReplayConfig()).additive("decode")
    assert not StepCoster(spec, hw, ReplayConfig()).additive("prefill")  # vllm's graphs: decode only
    assert not StepCoster(spec, hw, ReplayConfig(prefetch=True)).additive("decode")
    assert not StepCoster(spec, hw, ReplayConfig(launch="eager")).additive("decode")


def test_runs_break_where_a_sequence_changes_epoch_or_leaves_the_batch() -> None:
    from dartsim.replay.steps import step_count

    spec = load_model_spec("smollm2-135m")
    a = synth_trace(spec, 16, 200, 1, 0.6, seed=1, params=SMALL_T)
    b = synth_trace(spec, 16, 120, 0, 0.6, seed=2, params=SMALL_T)
    runs = build_steps([a, b], spec, False, scheduling="sequential")
    steps = expand(runs)
    assert step_count(runs) == len(steps) == 2 + 199  # two prefills, then a's 199 decode steps
    assert [len(s.contexts) for s in steps[2:]] == [2] * 119 + [1] * 80
    assert all(s.contexts[0] == 17 + j for j, s in enumerate(steps[2:]))
    epochs_a = a.steps.epoch[1:].tolist()
    for run in runs[2:]:
        first = sum(r.count for r in runs[2 : runs.index(run)])
        span = epochs_a[first : first + run.count]
        assert len(set(span)) == 1, "a run spans one epoch of every sequence"
    assert sum(len(s.mask_builds) for s in steps) == a.epochs.count + b.epochs.count


def test_replay_totals_equal_the_workload_model() -> None:
    """Conservation over a whole replay: every step's kernels from the workload model."""
    spec = load_model_spec("smollm2-135m")
    trace = synth_trace(spec, 16, 200, 1, 0.5, params=SMALL_T)
    steps = build_steps([trace], spec, False)
    hw = load_hardware_spec("l40s")
    result = run_steps(steps, spec, hw, ReplayConfig(memoize=True))
    expected_bytes = expected_flops = 0
    for step in expand(steps):
        kernels = _step_kernels(spec, hw, step)
        expected_bytes += sum(k.bytes for k in kernels)
        expected_flops += sum(k.flops for k in kernels)
    mask_bytes = sum(b.bytes for b in result.mask_builds)
    mask_flops = sum(b.flops for b in result.mask_builds)
    assert mask_flops > 0  # DART's top-k at each mask build counts
    assert result.totals.bytes == expected_bytes + mask_bytes
    assert result.totals.flops == expected_flops + mask_flops
    assert len(result.mask_builds) == 2  # the first mask and one re-trigger


def _step_kernels(spec, hw, step):  # type: ignore[no-untyped-def]
    """The workload model's kernels of one replay step, as the replay's coster builds them."""
    from dartsim.engine.costing import StepCoster

    return StepCoster(spec, hw, ReplayConfig()).kernels(step, step.contexts)


def test_batches_fetch_the_union_of_kept_neurons() -> None:
    spec = load_model_spec("smollm2-135m")
    a = synth_trace(spec, 16, 120, 0, 0.7, seed=1, params=SMALL_T)
    b = synth_trace(spec, 16, 120, 0, 0.7, seed=2, params=SMALL_T)
    steps = build_steps([a, b], spec, False)
    masked = next(s for s in steps if s.phase == "decode" and s.kept[0] < spec.intermediate_size)
    union = a.mask(0) | b.mask(0)
    assert list(masked.kept) == union.sum(axis=-1).tolist()
    assert all(k >= int(a.epochs.kept[0][i]) for i, k in enumerate(masked.kept))
    assert len(masked.contexts) == 2


def test_retargeting_maps_keep_ratios_by_depth() -> None:
    source = load_model_spec("smollm2-135m")
    target = load_model_spec("llama-3.1-8b")
    trace = synth_trace(source, 16, 120, 0, 0.7, params=SMALL_T)
    retarget, name = check_retarget([trace], target)
    assert retarget and name == "smollm2-135m"
    steps = build_steps([trace], target, True)
    masked = next(s for s in steps if s.kept[0] < target.intermediate_size)
    ratios = trace.epochs.keep_ratio[0]
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
    assert {p.name for p in out.iterdir()} == {
        "replay.json",
        "summary.md",
        "results.csv",
        "layers.csv",
        "retriggers.csv",
    }
    events = json.loads(timeline.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"DRAM", "launch", "compute (tensor)"} <= names
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
    assert sum(b.bytes for b in compact.mask_builds) > sum(b.bytes for b in gather.mask_builds)
    assert gather.tpot_p50_s > compact.tpot_p50_s


def test_layer_times_are_shares_of_the_simulated_time() -> None:
    """Per-layer attention and MLP times apportion each step's time by kernel demand: they
    never add up to more than the run, and cover most of it for a large model."""
    spec = load_model_spec("llama-3.1-8b")
    trace = synth_trace(spec, 64, 300, 1, 0.7, params=SMALL_T)
    result = run_steps(build_steps([trace], spec, False), spec, load_hardware_spec("l40s"), ReplayConfig())
    parts = sum(row.part(p).time_s for row in result.layers for p in ("attention", "mlp"))
    total = result.totals.time_s
    assert 0.7 * total < parts <= total
    first = result.layers[0]
    assert first.attention.bound == "memory" and first.mlp.bound == "memory"
    # MLP weights are 4.2x the attention weights in 8B; at 70% sparsity the ratio shrinks.
    ratio = first.mlp.time_s / first.attention.time_s
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
    assert "skipped a100-sxm-80gb vllm" in result.err and "skipped l40s vllm --tp 3" in result.err
    assert {r["stack"] for r in rows} == {"vllm"}
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
    import numpy as np

    from dartsim.replay.steps import busiest_shard_kept

    mask = np.zeros((2, 8), dtype=bool)
    mask[0, :3] = True  # all three kept neurons on shard 0 of 2
    mask[1, [0, 5]] = True  # one on each shard
    assert busiest_shard_kept(mask, 2).tolist() == [6, 2]
    spec = load_model_spec("llama-3.1-8b")
    trace = synth_trace(spec, 16, 120, 0, 0.7, params=SMALL_T)
    one = build_steps([trace], spec, False, tp=1)
    two = build_steps([trace], spec, False, tp=2)
    masked = next(i for i, s in enumerate(one) if s.kept[0] < spec.intermediate_size)
    assert all(b >= a for a, b in zip(one[masked].kept, two[masked].kept, strict=True))
    full = trace.mask(0)
    halves = full.reshape(32, 2, -1).sum(-1).max(-1) * 2
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
    kernels = step_kernels(load_model_spec("llama-3.1-8b"), StepShape.decode(1, 512))
    wide_t = simulate_step(kernels, device(hw)).time_s
    narrow_result = simulate_step(kernels, device(narrow))
    total = sum(k.bytes for k in kernels)
    assert wide_t < narrow_result.time_s
    assert narrow_result.time_s >= total / (2 * 8 * 16e9)
    assert any(t.bound == "network" for t in narrow_result.timings)


def test_a_ttft_only_run_has_a_first_token_and_no_tpot(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "simulate", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--prompt-len", "512", "--gen-len", "1",
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["tokens"] == 1 and data["tpot_s"] is None and data["tpot_p99_s"] is None
    assert data["ttft_s"] == pytest.approx(data["totals"]["time_s"]) and data["ttft_s"] > 0
    path = tmp_path / "one.pt"
    save_trace(synth_trace(load_model_spec("smollm2-135m"), 32, 1, 0, 0.0, allocation="dense"), path)
    replay = run_cli("replay", str(path), "--hw", "l40s", "--format", "json", "--quiet")
    assert replay.code == 0, replay.err
    assert json.loads(replay.out)["tpot_s"] is None


def test_tied_embeddings_are_stored_once_and_split_by_vocabulary() -> None:
    from dartsim.replay.capacity import memory_needed_bytes

    smol = load_model_spec("smollm2-135m")  # ties its lm_head to the embedding
    assert smol.tie_word_embeddings
    untied = dataclasses.replace(smol, tie_word_embeddings=False)
    table = smol.vocab_size * smol.hidden_size * 2  # fp16 rows
    prec = Precision()
    assert memory_needed_bytes(untied, prec, 1, 0) - memory_needed_bytes(smol, prec, 1, 0) == table
    big = load_model_spec("llama-3.1-70b")
    one, four = memory_needed_bytes(big, prec, 1, 0), memory_needed_bytes(big, prec, 4, 0)
    assert four == pytest.approx(one / 4, rel=0.01)


def test_components_split_the_totals_and_other_is_what_no_block_holds() -> None:
    """attention + mlp + other = totals; `other` equals, kernel by kernel from the workload
    model, the bytes and FLOPs of everything outside the attention and MLP blocks (embedding,
    norms, residual adds, lm_head) plus the mask builds."""
    spec = load_model_spec("smollm2-135m")
    trace = synth_trace(spec, 16, 200, 1, 0.5, params=SMALL_T)
    steps = build_steps([trace], spec, False)
    result = run_steps(steps, spec, load_hardware_spec("l40s"), ReplayConfig(memoize=True))
    parts, totals = result.components, result.totals
    for key in ("bytes", "flops"):
        total = getattr(totals, key)
        assert sum(getattr(parts[name], key) for name in ("attention", "mlp", "other")) == total
    assert sum(parts[n].time_s for n in parts) == pytest.approx(totals.time_s, rel=1e-12)
    assert sum(parts[n].share_bytes for n in parts) == pytest.approx(1.0)
    assert sum(parts[n].share_time for n in parts) == pytest.approx(1.0)
    outside_bytes = outside_flops = 0
    for step in expand(steps):
        kernels = _step_kernels(spec, load_hardware_spec("l40s"), step)
        outside = [k for k in kernels if k.component.value not in ("attention", "mlp")]
        outside_bytes += sum(k.bytes for k in outside)
        outside_flops += sum(k.flops for k in outside)
    builds = sum(b.bytes for b in result.mask_builds)
    assert parts["other"].mask_builds_bytes == builds > 0
    assert parts["other"].bytes == outside_bytes + builds
    assert parts["other"].flops == outside_flops + sum(b.flops for b in result.mask_builds)
    assert parts["attention"].bytes == sum(row.attention.bytes for row in result.layers)


def _compare_8b(trace: Path) -> tuple[str, ...]:
    """Replay `trace` as Llama-3.1-8B on L40S beside its dense run."""
    return ("replay", str(trace), "--hw", "l40s", "--model", "llama-3.1-8b", "--compare-dense", "--quiet")


def test_sparsity_rebalances_towards_attention(run_cli, synth_file: Path) -> None:  # type: ignore[no-untyped-def]
    """The headline: attention's bytes do not change under FFN sparsity, MLP's fall, so
    attention's share of bytes and of time rises against the dense run."""
    args = _compare_8b(synth_file)
    data = json.loads(run_cli(*args, "--format", "json").out)
    run, dense = data["components"], data["dense"]["components"]
    assert run["attention"]["bytes"] == dense["attention"]["bytes"]
    assert run["mlp"]["bytes"] < dense["mlp"]["bytes"]
    assert run["attention"]["share_bytes"] > dense["attention"]["share_bytes"]
    assert run["attention"]["share_time"] > dense["attention"]["share_time"]
    table = run_cli(*args).out
    assert "(dense " in table and "all layers" in table and "per token" in table and "mlp GB dense" in table


def test_csv_output_is_tidy_and_carries_what_json_does(run_cli, synth_file: Path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    args = _compare_8b(synth_file)
    data = json.loads(run_cli(*args, "--format", "json").out)
    rows = list(csv.reader(io.StringIO(run_cli(*args, "--format", "csv").out)))
    assert rows[0] == ["run", "stack", "scope", "component", "metric", "value", "unit"]
    assert all(len(r) == 7 for r in rows)
    assert {r[1] for r in rows[1:]} == {data["stack"]}
    cell = {(r[0], r[2], r[3], r[4]): r[5] for r in rows[1:]}
    assert len(cell) == len(rows) - 1, "each (run, scope, component, metric) appears once"
    assert int(cell[("run", "total", "all", "bytes")]) == data["totals"]["bytes"]
    assert int(cell[("dense", "total", "mlp", "bytes")]) == data["dense"]["components"]["mlp"]["bytes"]
    assert float(cell[("run", "total", "all", "tpot_s")]) == pytest.approx(data["tpot_s"])
    assert float(cell[("run", "total", "all", "speedup_vs_dense")]) == pytest.approx(data["speedup"])
    assert int(cell[("run", "layer 3", "attention", "bytes")]) == data["layers"][3]["attention"]["bytes"]


def test_sweep_has_a_stack_axis_and_the_stack_changes_the_time(run_cli, synth_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "sweep", str(synth_file), "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--tp", "1",
        "--mask-apply", "compact", "--stack", "vllm,trtllm-0.9,pytorch-eager", "--format", "json", "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    labels = [r["stack"].split(" ")[0] for r in rows]
    assert labels == ["vllm", "trtllm-0.9", "pytorch-eager"]
    times = {label: r["time_s"] for label, r in zip(labels, rows, strict=True)}
    assert times["pytorch-eager"] > times["vllm"]  # eager, unfused, host-bound
    assert len(set(times.values())) == 3
