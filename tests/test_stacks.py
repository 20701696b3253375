"""The software-stack layer: stack files and their validation, what each stack decides
(fusion, attention kernels, prefill scheduling, memory reserve), and the smaller rules of
issue 17 (fused DART observation, mask builds, W_down's layout, links, tensor parallelism)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from dartsim.engine.costing import StepCoster
from dartsim.engine.machine import device, kernel_cost
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.errors import UserError
from dartsim.replay.capacity import choose_tp
from dartsim.replay.steps import prefill_pieces
from dartsim.specs.dtypes import FP8, FP16
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.specs.stack import (
    default_stack,
    load_stack_spec,
    override_stack,
    stack_for,
    stack_preset_names,
)
from dartsim.workload import Execution, Precision, StepShape, retrigger_kernels, step_kernels
from dartsim.workload.execution import KernelFusion
from dartsim.workload.kernels import TensorKind


def _stack_dict(name: str = "vllm") -> dict[str, Any]:
    return yaml.safe_load(Path(load_stack_spec(name).source_file).read_text())


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_preset_loads_cites_its_sources_and_names_what_it_fits() -> None:
    names = stack_preset_names()
    assert {"trtllm-0.9", "trtllm-graphs", "vllm", "vllm-v0", "sglang", "pytorch-eager", "gpt-fast",
            "rocm-vllm", "pytorch-cpu"} <= set(names)  # fmt: skip
    for name in names:
        stack = load_stack_spec(name)
        assert {"launch", "allreduce", "fusion", "attention", "prefill", "memory"} <= set(stack.sources)
        assert "launch.kernel_gap_us" in stack.sources and "launch.step_overhead_us" in stack.sources
        for on, fitted in stack.devices.items():
            assert set(fitted) <= set(stack.calibrated), (name, on)
            assert stack.sources[f"devices.{on}"].strip()


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (["launch", "mode"], "lazy", "'launch.mode' must be one of graph, eager"),
        (["launch", "kernel_gap_us"], -1.0, "'launch.kernel_gap_us' must be zero or positive"),
        (["launch", "warp_speed"], 9, "unknown key 'launch.warp_speed'"),
        (["attention", "prefill_efficiency", "fp8"], 1.5, "must lie in (0, 1]"),
        (["fusion", "gate_up"], "two", "'fusion.gate_up' must be one of one_kernel, merged_gemm, separate"),
        (
            ["prefill", "chunk_tokens"],
            None,
            "'prefill.chunk_tokens' is required when prefill.scheduling is chunked",
        ),
        (["calibrated"], ["fusion.qkv"], "names 'fusion.qkv', which is not a numeric field"),
        (["memory", "reserve_fraction"], 0.95, "'memory.reserve_fraction' must be at most 0.9"),
    ],
)
def test_a_bad_stack_file_is_one_line_naming_file_field_and_value(
    tmp_path: Path, where: list[str], value: Any, message: str
) -> None:
    data = _stack_dict()
    node = data
    for key in where[:-1]:
        node = node[key]
    if value is None:
        node.pop(where[-1])
    else:
        node[where[-1]] = value
    path = _write(tmp_path, data)
    with pytest.raises(UserError) as err:
        load_stack_spec(path)
    assert str(err.value).startswith(path) and message in str(err.value)


def test_fitted_values_apply_on_their_device_only(tmp_path: Path) -> None:
    data = _stack_dict("vllm")
    data["devices"] = {"h100-sxm": {"launch.step_overhead_us": 123.0, "source": "a test fit"}}
    stack = load_stack_spec(_write(tmp_path, data))
    on = stack.for_device("h100-sxm")
    assert on.launch.step_overhead_s == pytest.approx(123e-6) and on.label == "vllm (fitted on h100-sxm)"
    assert stack.for_device("l40s").launch.step_overhead_s == stack.launch.step_overhead_s
    data["devices"]["h100-sxm"]["fusion.qkv"] = 1.0
    with pytest.raises(UserError, match="is not listed under calibrated"):
        load_stack_spec(_write(tmp_path, data))


def test_override_names_what_it_replaced() -> None:
    stack = load_stack_spec("vllm")
    changed = override_stack(stack, {"launch.kernel_gap_us": 0.5}, "study")
    assert changed.launch.kernel_gap_s == pytest.approx(0.5e-6)
    assert changed.sources["launch.kernel_gap_us"].startswith("study; was: ")


def test_a_hardware_file_names_its_stack_and_a_path_resolves_beside_it() -> None:
    assert default_stack(load_hardware_spec("h100-sxm")).name == "vllm"
    assert default_stack(load_hardware_spec("mi300x")).name == "rocm-vllm"
    assert default_stack(load_hardware_spec("cpu-host")).name == "pytorch-cpu"
    npu = load_hardware_spec(str(Path(__file__).resolve().parents[1] / "examples" / "hw" / "mesh-npu.yaml"))
    assert default_stack(npu).name == "npu-runtime"


def test_the_stack_decides_the_kernels() -> None:
    """vLLM merges gate and up into one GEMM and fuses residual adds into the norms;
    Hugging Face eager runs q, k, v and gate, up apart; both count the same FLOPs."""
    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    step = ReplayStep("decode", 1, (512,), tuple([spec.intermediate_size] * spec.num_layers), False)
    names = {}
    flops = {}
    for name in ("vllm", "pytorch-eager"):
        coster = StepCoster(spec, hw, ReplayConfig(stack=stack_for(name, hw)))
        kernels = coster.kernels(step, step.contexts)
        names[name] = [k.name for k in kernels if k.layer == 1]
        flops[name] = sum(k.flops_matmul for k in kernels)
    assert "gate_up_proj" in names["vllm"] and "swiglu" in names["vllm"]
    assert "input_add_layernorm" in names["vllm"] and "attn_residual" not in names["vllm"]
    assert {"q_proj", "gate_proj", "up_proj", "attn_residual"} <= set(names["pytorch-eager"])
    assert len(names["pytorch-eager"]) > len(names["vllm"])
    assert flops["vllm"] == flops["pytorch-eager"]


def test_fused_norms_move_bytes_exactly() -> None:
    """A fused add + norm reads h, f and the weight and writes h' and xn: one round trip of
    h less per residual add than the add and the norm apart."""
    spec = load_model_spec("llama-3.1-8b")
    shape = StepShape.decode(4, 64)
    apart = step_kernels(spec, shape, execution=Execution())
    fused = step_kernels(spec, shape, execution=Execution(fusion=KernelFusion(norm_residual=True)))
    T, d = shape.tokens, spec.hidden_size
    adds = 2 * spec.num_layers
    assert sum(k.bytes for k in apart) - sum(k.bytes for k in fused) == adds * T * d * 2
    assert len(apart) - len(fused) == adds


def test_unfused_fp8_input_quantisation_adds_kernels_and_reads_fp8() -> None:
    spec = load_model_spec("llama-3.1-8b")
    shape = StepShape.decode(1, 64)
    prec = Precision(FP8, FP16, FP8)
    fused = step_kernels(spec, shape, precision=prec, execution=Execution())
    apart = step_kernels(
        spec, shape, precision=prec, execution=Execution(fusion=KernelFusion(activation_quant=False))
    )
    quants = [k for k in apart if k.name.endswith("_quant")]
    assert len(quants) == 4 * spec.num_layers
    gemm = next(k for k in apart if k.name == "o_proj")
    assert next(t for t in gemm.reads if t.kind is TensorKind.ACTIVATION).dtype == FP8
    assert len(apart) - len(fused) == len(quants)


def test_attention_computes_in_fp8_only_where_the_stack_says() -> None:
    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    step = ReplayStep("prefill", 2048, (2048,), tuple([spec.intermediate_size] * spec.num_layers), False)
    formats = {}
    for name in ("trtllm-0.9", "trtllm-graphs"):
        kernels = StepCoster(spec, hw, ReplayConfig(stack=stack_for(name, hw))).kernels(step, step.contexts)
        formats[name] = next(k for k in kernels if k.name == "attention").compute_dtype
    assert formats == {"trtllm-0.9": FP16, "trtllm-graphs": FP8}


def test_decode_attention_streams_the_cache_at_the_stacks_efficiency() -> None:
    """KV reads at decode_bandwidth_efficiency (x gqa_efficiency for grouped heads), plus
    the fixed time: long contexts approach the asymptote, short ones fall below it."""
    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    stack = stack_for("vllm", hw)
    stack = dataclasses.replace(stack, attention=dataclasses.replace(stack.attention, gqa_efficiency=0.5))
    dev = device(hw, stack)
    rates = []
    for context in (1024, 8192):
        kernels = step_kernels(spec, StepShape.decode(64, context))
        attention = next(k for k in kernels if k.name == "attention")
        cost = kernel_cost(attention, dev)
        kv = sum(t.bytes for t in attention.reads if t.kind is TensorKind.KV_CACHE)
        expected = kv / (dev.dram_bytes_per_s * stack.attention.decode_bandwidth_efficiency * 0.5)
        assert cost.fixed_s == pytest.approx(stack.attention.decode_fixed_s)
        assert cost.dram_s >= expected * (1 - 1e-9)
        rates.append(kv / (cost.memory_path_s + cost.fixed_s))
    assert rates[1] > rates[0]


def test_batched_prefill_is_one_step_with_attention_per_sequence(run_cli) -> None:  # type: ignore[no-untyped-def]
    """64 prompts of 128 tokens prefill as one step of 8192 tokens, not 64 steps: the
    weights are read once, and TTFT is far below 64 single prefills."""
    import json

    def ttft(batch: int, stack: str) -> dict[str, Any]:
        args = ["--batch", str(batch), "--prompt-len", "128", "--gen-len", "2", "--stack", stack]
        out = run_cli(
            "simulate", "--model", "llama-3.1-8b", "--hw", "h100-sxm", *args, "--format", "json", "--quiet"
        )
        assert out.code == 0, out.err
        return json.loads(out.out)

    one, batched = ttft(1, "trtllm-0.9"), ttft(64, "trtllm-0.9")
    assert batched["ttft_s"] < 64 * one["ttft_s"] / 3
    assert batched["ttft_mean_s"] == pytest.approx(batched["ttft_s"]) == batched["ttft_p99_s"]


def test_prefill_pieces_follow_the_scheduling() -> None:
    prompts = [100, 300, 50]
    assert prefill_pieces(prompts, "batched", None) == [[(0, 100, 100), (1, 300, 300), (2, 50, 50)]]
    assert prefill_pieces(prompts, "sequential", None) == [[(0, 100, 100)], [(1, 300, 300)], [(2, 50, 50)]]
    chunks = prefill_pieces(prompts, "chunked", 128)
    assert all(sum(n for _, n, _ in step) <= 128 for step in chunks)
    assert sum(n for step in chunks for _, n, _ in step) == sum(prompts)
    finished = [c for step in chunks for i, _, c in step if c == prompts[i]]
    assert len(finished) == 3


def test_chunked_prefill_staggers_first_tokens(run_cli) -> None:  # type: ignore[no-untyped-def]
    import json

    out = run_cli("simulate", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--batch", "8", "--prompt-len",
                  "4096", "--gen-len", "2", "--stack", "vllm", "--format", "json", "--quiet")  # fmt: skip
    data = json.loads(out.out)
    assert data["ttft_mean_s"] < data["ttft_p99_s"] <= data["ttft_s"]


def test_dart_observation_is_fused_and_mask_builds_do_not_upload_what_they_compute() -> None:
    spec = load_model_spec("llama-3.1-8b")
    shape = StepShape.decode(1, 64)
    plain = step_kernels(spec, shape, execution=Execution())
    observed = step_kernels(spec, shape, execution=Execution(dart_observe=True))
    assert len(plain) == len(observed)  # no kernel of its own, so no gap of its own
    assert sum(k.flops for k in observed) > sum(k.flops for k in plain)
    assert all(k.name != "dart_observe" for k in observed)
    kept = [spec.intermediate_size // 3] * spec.num_layers
    device_side = retrigger_kernels(spec, kept, execution=Execution(), topk=True)
    offline = retrigger_kernels(spec, kept, execution=Execution(), topk=False)
    assert sum(k.host_bytes for k in device_side) == 0 and all(k.flops_vector for k in device_side)
    assert sum(k.host_bytes for k in offline) > 0 and not any(k.flops_vector for k in offline)


def test_the_compact_copy_reads_at_gather_efficiency_and_an_input_major_down_gathers_nothing() -> None:
    """Kept rows of d weights read as gathered rows; in a [d, m] W_down at FP8 a third of
    the neurons touches nearly every 64-byte burst, so a gather saves nothing."""
    spec, hw = load_model_spec("llama-3.1-8b"), load_hardware_spec("h100-sxm")
    dev = device(hw)
    kept = [spec.intermediate_size * 3 // 10] * spec.num_layers
    prec = Precision(FP8, FP16, FP8)
    build = retrigger_kernels(spec, kept, prec, Execution())[0]
    rows = [t for t in build.reads if t.kind is TensorKind.WEIGHT]
    assert all(t.row_elements == spec.hidden_size for t in rows)
    shape = StepShape.decode(1, 64)
    times = {}
    for layout in (False, True):
        run = Execution(mask_apply="gather", fusion=KernelFusion(down_input_major=layout))
        down = next(k for k in step_kernels(spec, shape, kept, prec, execution=run) if k.name == "down_proj")
        times[layout] = kernel_cost(down, dev).dram_s
    dense = next(k for k in step_kernels(spec, shape, None, prec) if k.name == "down_proj")
    assert times[True] > 0.9 * kernel_cost(dense, dev).dram_s > times[False]


def test_tp_auto_keeps_the_stacks_reserve_and_stays_within_a_node() -> None:
    spec = load_model_spec("llama-3.1-70b")
    h100, l40s = load_hardware_spec("h100-sxm"), load_hardware_spec("l40s")
    prec = Precision(FP16, FP16, FP16)  # 141 GB of weights
    assert choose_tp(spec, h100, prec, "auto", 0, 0.0) == 2
    kv = 60_000  # positions: TP 2 fits the whole card, not the 90% a stack leaves
    assert choose_tp(spec, h100, prec, "auto", kv, 0.0) == 2
    assert choose_tp(spec, h100, prec, "auto", kv, 0.1) == 4
    big = load_model_spec("llama-3.1-70b")
    with pytest.raises(UserError, match="up to 8, the devices its links connect"):
        choose_tp(big, l40s, Precision(FP16, FP16, FP16), "auto", 2_000_000, 0.1)


def test_a_merged_gate_up_gather_reads_one_index_list() -> None:
    """gate and up merged into one GEMM gather the same k rows of both: k indices, not 2k."""
    spec = load_model_spec("llama-3.1-8b")
    k = spec.intermediate_size // 4
    run = Execution(mask_apply="gather", fusion=KernelFusion(swiglu_fused=False, gate_up_merged=True))
    kernels = step_kernels(spec, StepShape.decode(1, 64), [k] * spec.num_layers, execution=run)
    merged = next(kern for kern in kernels if kern.name == "gate_up_proj")
    index = next(t for t in merged.reads if t.name.endswith(".index"))
    assert index.numel == k
    weights = [t for t in merged.reads if t.kind is TensorKind.WEIGHT]
    assert sum(t.numel for t in weights) == 2 * k * spec.hidden_size


def test_bad_stacks_and_fit_folders_fail_before_any_work(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = str(Path(__file__).resolve().parents[1] / "traces" / "two-topic-70.pt")
    result = run_cli("sweep", trace, "--hw", "l40s", "--stack", "vllm,nope", "--quiet")
    assert result.code == 2 and "unknown software stack 'nope'" in result.err
    assert result.err.count("\n") == 1  # no point ran first
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("validate", "--published", "--fit", str(blocker / "out"))
    assert result.code == 2 and "cannot create the folder" in result.err
