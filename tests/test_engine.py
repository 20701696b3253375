"""The device model: conservation, physical bounds, limit cases, prefetch, launch modes,
chunked streaming, latency, shape-aware efficiency and collectives."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import pytest

from dartsim.engine import analytic
from dartsim.engine.collectives import collective_time
from dartsim.engine.efficiency import matmul_efficiency
from dartsim.engine.machine import Device, device, gather_efficiency, kernel_cost
from dartsim.engine.sim import simulate_step
from dartsim.specs.dtypes import BF16, FP32
from dartsim.specs.hardware import HardwareSpec, load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.specs.stack import StackSpec, default_stack
from dartsim.workload import Execution, MatmulShape, Precision, StepShape, step_kernels
from dartsim.workload.kernels import Component, Kernel, TensorAccess, TensorKind, Unit

UNLIMITED = 1e30


def instant(hw: HardwareSpec) -> HardwareSpec:
    """No latencies, an unlimited on-chip network and links."""
    return dataclasses.replace(
        hw,
        memory=dataclasses.replace(hw.memory, latency_s=0.0),
        noc=dataclasses.replace(hw.noc, link_bandwidth_bytes_per_s=UNLIMITED, hop_latency_s=0.0),
        link=dataclasses.replace(
            hw.link,
            bandwidth_bytes_per_s_per_direction=UNLIMITED,
            latency_s=0.0,
            per_peer_bandwidth_bytes_per_s=None,
        ),
    )


def instant_stack(hw: HardwareSpec, ideal_attention: bool = False) -> StackSpec:
    """The hardware's default stack with no launch, step or collective costs, and decode
    attention streaming the cache at the achievable bandwidth without a fixed part
    (`ideal_attention`: prefill attention at the tensor peak too)."""
    st = default_stack(hw)
    la = dataclasses.replace(
        st.launch,
        host_issue_s=0.0,
        step_overhead_s=0.0,
        kernel_gap_s=0.0,
        graph_launch_s=0.0,
        synchronous=False,
    )
    att = dataclasses.replace(
        st.attention, decode_fixed_s=0.0, decode_bandwidth_efficiency=1.0, gqa_efficiency=1.0
    )
    if ideal_attention:
        att = dataclasses.replace(att, prefill_efficiency=dict.fromkeys(att.prefill_efficiency, 1.0))
    return dataclasses.replace(
        st, launch=la, allreduce=dataclasses.replace(st.allreduce, call_s=0.0), attention=att
    )


def instant_device(hw: HardwareSpec, **kw: Any) -> Device:
    return device(instant(hw), instant_stack(hw), **kw)


def ideal_device(hw: HardwareSpec, sram_bytes: int | None = None) -> Device:
    return device(ideal(hw, sram_bytes), instant_stack(hw, ideal_attention=True))


def ideal(hw: HardwareSpec, sram_bytes: int | None = None) -> HardwareSpec:
    """`instant`, with every efficiency factor 1 (one compute unit, 1x1 tiles, no ramps):
    every kernel runs at its roofline."""
    hw = instant(hw)
    gemm = dataclasses.replace(
        hw.compute.gemm, tile_m=1, tile_n=1, tile_k=1, efficiency=1.0, k_overhead=0.0, m_overhead=0.0
    )
    return dataclasses.replace(
        hw,
        memory=dataclasses.replace(hw.memory, efficiency=1.0),
        compute=dataclasses.replace(hw.compute, units=1, gemm=gemm, vector_efficiency=1.0),
        on_chip=dataclasses.replace(hw.on_chip, sram_bytes=sram_bytes or hw.on_chip.sram_bytes),
    )


CASES = [
    ("llama-3.1-8b", StepShape.decode(1, 512), 1, None, "compact"),
    ("llama-3.1-8b", StepShape.decode(64, 2048), 1, 0.3, "gather"),
    ("llama-3.1-8b", StepShape.prefill(1, 256), 1, 0.5, "compact"),
    ("llama-3.1-70b", StepShape.decode(8, 1024), 2, 0.3, "compact"),
]
IDS = [f"{c[0]}-{c[1].phase}-b{c[1].batch}-tp{c[2]}-{c[4]}" for c in CASES]


def _kernels(
    model: str, shape: StepShape, tp: int, keep: float | None, mode: str, prec: Precision | None = None
):  # type: ignore[no-untyped-def]
    spec = load_model_spec(model)
    kept = None if keep is None else [round(keep * spec.intermediate_size)] * spec.num_layers
    execution = Execution(tp=tp, mask_apply=mode, allreduce="auto", one_shot_max_bytes=512 * 1024)
    return step_kernels(spec, shape, kept, prec, execution=execution)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("prefetch", [True, False])
def test_engine_events_conserve_bytes_flops_and_link_traffic(case, prefetch: bool) -> None:  # type: ignore[no-untyped-def]
    kernels = _kernels(*case)
    result = simulate_step(kernels, device(load_hardware_spec("l40s")), prefetch=prefetch)
    assert result.dram_bytes == sum(k.bytes for k in kernels)
    assert result.flops == sum(k.flops for k in kernels)
    assert result.link_bytes == sum(k.link_bytes for k in kernels)
    assert len(result.timings) == len(kernels)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("hw_name", ["l40s", "h100-sxm"])
@pytest.mark.parametrize("prefetch", [True, False])
def test_no_kernel_beats_peak_bandwidth_or_peak_compute(case, hw_name: str, prefetch: bool) -> None:  # type: ignore[no-untyped-def]
    hw = load_hardware_spec(hw_name)
    kernels = _kernels(*case)
    result = simulate_step(kernels, device(hw), prefetch=prefetch)
    peak_bw = hw.memory.peak_bandwidth_bytes_per_s
    for timing in result.timings:
        k = timing.kernel
        span = timing.end_s - timing.first_s
        assert span >= k.bytes / peak_bw * (1 - 1e-12)
        if k.flops_matmul:
            assert span >= k.flops_matmul / hw.tensor_flops_per_s(k.compute_dtype) * (1 - 1e-12)
        assert span >= k.flops_vector / hw.compute.vector_flops_per_s * (1 - 1e-12)
    assert result.time_s >= sum(k.bytes for k in kernels) / peak_bw


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_without_prefetch_an_ideal_step_is_the_sum_of_kernel_rooflines(case) -> None:  # type: ignore[no-untyped-def]
    if case[4] == "gather":
        pytest.skip("gathered rows run below peak bandwidth by design")
    dev = ideal_device(load_hardware_spec("l40s"))
    kernels = _kernels(*case)
    result = simulate_step(kernels, dev, prefetch=False)
    assert result.time_s == pytest.approx(analytic.serial_time(kernels, dev), rel=1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_with_prefetch_and_unlimited_sram_an_ideal_step_lies_within_the_overlap_bounds(case) -> None:  # type: ignore[no-untyped-def]
    if case[4] == "gather":
        pytest.skip("gathered rows run below peak bandwidth by design")
    dev = ideal_device(load_hardware_spec("l40s"), sram_bytes=10**15)
    kernels = _kernels(*case)
    result = simulate_step(kernels, dev, prefetch=True)
    lower, upper = analytic.overlapped_bounds(kernels, dev)
    assert lower * (1 - 1e-9) <= result.time_s <= upper * (1 + 1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_serial_evaluation_equals_the_event_simulation(case) -> None:  # type: ignore[no-untyped-def]
    """Without a streamer the executor is evaluated directly; SimPy must agree exactly."""
    dev = device(load_hardware_spec("h100-sxm"), launch="eager", prefetch=False)
    kernels = _kernels(*case)
    direct = simulate_step(kernels, dev)
    events = simulate_step(kernels, dev, force_events=True)
    assert direct.time_s == pytest.approx(events.time_s, rel=1e-12)
    assert [t.end_s for t in direct.timings] == pytest.approx([t.end_s for t in events.timings], rel=1e-12)
    assert direct.dram_bytes == events.dram_bytes


@pytest.mark.parametrize(
    ("hw_name", "case"),
    [
        *itertools.product(["h100-sxm", "l40s", "cpu-host"], CASES[:3]),
        ("mi300x", CASES[3]),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v[0]}-{v[1].phase}-b{v[1].batch}",
)
def test_prefetch_never_slows_a_step(hw_name: str, case) -> None:  # type: ignore[no-untyped-def]
    hw = load_hardware_spec(hw_name)
    prec = Precision(weight=FP32, activation=FP32, kv_cache=FP32) if hw_name == "cpu-host" else None
    kernels = _kernels(*case, prec=prec)
    for launch in ("graph", "eager"):
        dev = device(hw, launch=launch)
        with_prefetch = simulate_step(kernels, dev, prefetch=True).time_s
        without = simulate_step(kernels, dev, prefetch=False).time_s
        assert with_prefetch <= without * (1 + 1e-9), launch


def test_an_instant_device_decodes_at_bytes_over_bandwidth() -> None:
    """The H100 preset with launch costs and latencies removed (its own network and
    efficiencies kept): a batch-1 BF16 decode step of Llama-3.1-8B is memory-bound, so it
    takes its bytes over the achievable bandwidth, with or without prefetch."""
    dev = instant_device(load_hardware_spec("h100-sxm"))
    prec = Precision(weight=BF16, activation=BF16, kv_cache=BF16)
    kernels = step_kernels(load_model_spec("llama-3.1-8b"), StepShape.decode(1, 512), precision=prec)
    floor = sum(k.bytes for k in kernels) / dev.dram_bytes_per_s
    for prefetch in (False, True):
        assert simulate_step(kernels, dev, prefetch=prefetch).time_s == pytest.approx(floor, rel=0.01)


def _weights_only(n: int, size: int) -> list[Kernel]:
    """`n` kernels that only read `size` bytes of weights each."""
    return [
        Kernel(
            f"w{i}",
            i,
            Component.MLP,
            Unit.VECTOR,
            0,
            0,
            None,
            (TensorAccess("W", TensorKind.WEIGHT, size, BF16),),
            (),
        )
        for i in range(n)
    ]


def test_dram_latency_delays_data_without_occupying_bandwidth() -> None:
    """Ten weight-only kernels on a device with 1 us of DRAM latency: each kernel alone pays
    the latency once (serial), but a streamer keeps DRAM busy, so the step pays it once."""
    hw = instant(load_hardware_spec("h100-sxm"))
    hw = dataclasses.replace(hw, memory=dataclasses.replace(hw.memory, latency_s=1e-6))
    dev = device(hw, instant_stack(hw))
    kernels = _weights_only(10, 2_000_000)
    per_kernel = 2 * 2_000_000 / dev.dram_bytes_per_s
    serial = simulate_step(kernels, dev, prefetch=False).time_s
    streamed = simulate_step(kernels, dev, prefetch=True).time_s
    assert serial == pytest.approx(10 * (per_kernel + 1e-6), rel=1e-9)
    assert streamed == pytest.approx(10 * per_kernel + 1e-6, rel=1e-9)


def test_weights_larger_than_the_on_chip_memory_stream_through_it() -> None:
    """Kernels each reading three times the on-chip memory: chunked streaming keeps DRAM
    busy, so the step takes its bytes over bandwidth (the pipeline never drains)."""
    hw = instant(load_hardware_spec("h100-sxm"))
    dev = device(hw, instant_stack(hw))
    size = 3 * hw.on_chip.sram_bytes // 2  # elements of 2 bytes: 3x the buffer
    kernels = _weights_only(4, size)
    floor = sum(k.bytes for k in kernels) / dev.dram_bytes_per_s
    assert simulate_step(kernels, dev, prefetch=True).time_s == pytest.approx(floor, rel=1e-9)


def _tiny_kernels(n: int, dev: Device) -> tuple[list[Kernel], float]:
    kernels = _weights_only(n, 1000)
    body = kernel_cost(kernels[0], dev).memory_path_s + dev.memory_latency_s
    return kernels, body


def _stack_with(hw: HardwareSpec, **launch: Any) -> StackSpec:
    st = default_stack(hw)
    return dataclasses.replace(st, launch=dataclasses.replace(st.launch, **launch))


def test_launch_modes_follow_their_rules() -> None:
    """graph: step overhead and the graph's launch, then a gap between kernels; eager: the
    host issues every kernel and, when that is slower than the kernels, the device waits
    for it; synchronous: issue and execution add up. ops_per_kernel framework kernels per
    modelled kernel pay the issue and the gap each.
    A stack's graphs cover decode steps only: its prefills run eager."""
    hw = load_hardware_spec("h100-sxm")
    st = _stack_with(hw, host_issue_s=5e-6, ops_per_kernel=2.0, step_overhead_s=20e-6, kernel_gap_s=1e-6,
                     graph_launch_s=7e-6, prefill_graphs=False, synchronous=False)  # fmt: skip
    n = 50
    kernels, body = _tiny_kernels(n, device(hw, st))
    assert body < 10e-6  # the kernels are shorter than the host's issue time
    graph = simulate_step(kernels, device(hw, st, launch="graph"), phase="decode").time_s
    eager = simulate_step(kernels, device(hw, st, launch="eager"), phase="decode").time_s
    gap = 2 * 1e-6  # two framework kernels per modelled kernel: two gaps
    assert graph == pytest.approx(27e-6 + n * body + (n - 1) * gap, rel=1e-9)
    assert eager == pytest.approx(20e-6 + n * 10e-6 + body, rel=1e-9)
    prefill = simulate_step(kernels, device(hw, st, launch="graph"), phase="prefill").time_s
    assert prefill == pytest.approx(eager, rel=1e-12)  # not covered by the graphs
    covered = dataclasses.replace(st, launch=dataclasses.replace(st.launch, prefill_graphs=True))
    assert simulate_step(kernels, device(hw, covered), phase="prefill").time_s == pytest.approx(
        graph, rel=1e-12
    )
    sync = dataclasses.replace(st, launch=dataclasses.replace(st.launch, synchronous=True))
    assert simulate_step(kernels, device(hw, sync, launch="eager")).time_s == pytest.approx(
        20e-6 + n * (10e-6 + body) + (n - 1) * gap, rel=1e-9
    )
    bounds = {t.bound for t in simulate_step(kernels, device(hw, st, launch="eager")).timings}
    assert bounds == {"launch"}


def test_eager_and_graph_differ_as_their_stacks_say() -> None:
    """On a real decode step the two modes differ by what the stack's constants say: with a
    host issue cost above the graph's per-kernel gap, eager is slower, by at most the
    exposed issue time; with graphs, the step pays one gap per kernel."""
    hw = load_hardware_spec("h100-sxm")
    kernels = _kernels("llama-3.1-8b", StepShape.decode(1, 1024), 1, None, "compact")
    st = _stack_with(hw, host_issue_s=6e-6, kernel_gap_s=1e-6, graph_launch_s=10e-6, step_overhead_s=50e-6,
                     ops_per_kernel=1.0, synchronous=False)  # fmt: skip
    graph = simulate_step(kernels, device(hw, st, launch="graph")).time_s
    eager = simulate_step(kernels, device(hw, st, launch="eager")).time_s
    n = len(kernels)
    assert graph < eager < graph + n * 6e-6
    no_gap = _stack_with(hw, kernel_gap_s=0.0, graph_launch_s=10e-6, step_overhead_s=50e-6)
    assert graph - simulate_step(kernels, device(hw, no_gap, launch="graph")).time_s == pytest.approx(
        (n - 1) * 1e-6, rel=1e-9
    )


def test_the_eager_closed_form_equals_the_simulation() -> None:
    """engine/launch.py's closed form of an asynchronous eager step (what a fit of the
    launch fields evaluates) equals the kernel-by-kernel simulation."""
    from dartsim.engine.launch import eager_step_time
    from dartsim.engine.machine import body_time

    hw = load_hardware_spec("h100-sxm")
    kernels = _kernels("llama-3.1-70b", StepShape.decode(8, 1024), 2, 0.3, "compact")
    for issue, gap in ((2e-6, 1e-6), (8e-6, 1.5e-6), (30e-6, 0.0)):
        st = _stack_with(hw, host_issue_s=issue, kernel_gap_s=gap, step_overhead_s=40e-6, ops_per_kernel=1.0,
                         synchronous=False)  # fmt: skip
        dev = device(hw, st, launch="eager")
        bodies = np.array([body_time(kernel_cost(k, dev), dev) for k in kernels])
        closed = float(eager_step_time(bodies, 40e-6, issue, gap))
        assert closed == pytest.approx(simulate_step(kernels, dev).time_s, rel=1e-12)


SIZES = [1, 7, 16, 64, 128, 512, 2048, 8192]


@pytest.mark.parametrize("hw_name", ["h100-sxm", "l40s", "a100-sxm-80gb", "cpu-host"])
def test_matmul_efficiency_lies_in_zero_one(hw_name: str) -> None:
    compute = load_hardware_spec(hw_name).compute
    for m, n, k in itertools.product(SIZES, SIZES, SIZES):
        for attention in (False, True):
            eff = matmul_efficiency(MatmulShape(m, n, k, 1, attention), compute)
            assert 0 < eff <= 1, (m, n, k, attention)


@pytest.mark.parametrize("hw_name", ["h100-sxm", "cpu-host"])
def test_matmul_efficiency_grows_with_size_in_whole_waves(hw_name: str) -> None:
    """Doubling M, N or K of a problem that fills whole waves of whole tiles never lowers
    the efficiency (wave and pad effects aside, the ramps only amortise better)."""
    compute = load_hardware_spec(hw_name).compute
    g = compute.gemm
    base_m, base_n = g.tile_m * compute.units, g.tile_n * 4
    for k in (256, 1024, 4096):
        m_eff = [matmul_efficiency(MatmulShape(base_m * 2**i, base_n, k), compute) for i in range(4)]
        n_eff = [matmul_efficiency(MatmulShape(base_m, base_n * 2**i, k), compute) for i in range(4)]
        k_eff = [matmul_efficiency(MatmulShape(base_m, base_n, k * 2**i), compute) for i in range(4)]
        for series in (m_eff, n_eff, k_eff):
            assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(series)), series


def test_a_partial_wave_idles_units_unless_stream_k_takes_it() -> None:
    """A tail wave more than half full runs data-parallel and idles the rest of the units;
    a nearly empty one is spread over every unit by stream-K (CUTLASS's heuristic), at a
    small fixup cost; with too few K tiles to split, the partial wave is paid."""
    compute = load_hardware_spec("h100-sxm").compute
    g, units = compute.gemm, compute.units
    full = matmul_efficiency(MatmulShape(g.tile_m * units, g.tile_n, 4096), compute)
    three_quarters = matmul_efficiency(
        MatmulShape(g.tile_m * (units + 3 * units // 4), g.tile_n, 4096), compute
    )
    one_more = matmul_efficiency(MatmulShape(g.tile_m * (units + 1), g.tile_n, 4096), compute)
    short_k = matmul_efficiency(MatmulShape(g.tile_m * (units + 1), g.tile_n, 8 * g.tile_k), compute)
    short_k_full = matmul_efficiency(MatmulShape(g.tile_m * units, g.tile_n, 8 * g.tile_k), compute)
    assert three_quarters == pytest.approx(full * (1.75 / 2), rel=0.02)
    assert 0.85 * full < one_more < full  # data-parallel would give about half of full
    assert short_k < 0.6 * short_k_full


def test_large_m_picks_the_half_height_tile_where_it_pads_less() -> None:
    """M = 160 pads to 192 rows with a 64-row tile (twice as wide), not to 256 with the
    128-row tile; cost per token then stays near flat from batch 128 to 160."""
    from dartsim.engine.efficiency import tiling

    compute = load_hardware_spec("h100-sxm").compute
    t = tiling(MatmulShape(160, 7168, 8192), compute)
    assert t.pad_efficiency == pytest.approx(160 / 192)
    eff = [matmul_efficiency(MatmulShape(m, 7168, 8192), compute) for m in (128, 160)]
    assert eff[1] > 0.8 * eff[0]


def test_skinny_gemms_pad_to_the_smallest_tile_and_split_k() -> None:
    """A decode GEMM (M = 1) pads to 16 rows, not to the 128-row tile, and splits K to fill
    the compute units; so it stays memory-bound on a GPU."""
    hw = load_hardware_spec("h100-sxm")
    shape = MatmulShape(1, 4096, 4096)
    eff = matmul_efficiency(shape, hw.compute)
    assert eff > hw.compute.gemm.efficiency / 16 * 0.3
    kernels = _kernels("llama-3.1-8b", StepShape.decode(1, 512), 1, None, "compact")
    dev = device(hw)
    q = next(k for k in kernels if k.name == "q_proj")
    cost = kernel_cost(q, dev)
    assert cost.compute_s < cost.dram_s


def test_gather_efficiency_falls_for_short_rows() -> None:
    assert gather_efficiency(4096, 64, 64) > 0.98
    assert gather_efficiency(576, 64, 64) < gather_efficiency(4096, 64, 64)
    assert gather_efficiency(32, 64, 64) == pytest.approx(32 / 128)
    assert gather_efficiency(32, 32, 0) == 1.0


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_allreduce_time_follows_the_algorithm(tp: int) -> None:
    """time = call + hops x latency + bytes sent / (bandwidth x efficiency); one-shot sends
    (tp - 1) x S over one hop, two-shot and ring 2 (tp - 1) / tp x S over 2 and 2 (tp - 1)."""
    hw = load_hardware_spec("h100-sxm")
    link = hw.link
    spec = load_model_spec("llama-3.1-70b")
    bw = link.bandwidth_bytes_per_s_per_direction * link.efficiency
    for algorithm, tokens in itertools.product(("ring", "tree", "two_shot", "one_shot"), (1, 4096)):
        run = Execution(tp=tp, allreduce=algorithm)
        kernels = step_kernels(spec, StepShape("prefill", 1, tokens, tokens), execution=run)
        ar = next(k for k in kernels if k.name == "attn_all_reduce")
        payload = tokens * spec.hidden_size * 2
        sent, hops = {
            "one_shot": ((tp - 1) * payload, 1),
            "two_shot": (2 * (tp - 1) * payload // tp, 2),
            "ring": (2 * (tp - 1) * payload // tp, 2 * (tp - 1)),
            "tree": (2 * (tp - 1) * payload // tp, 2 * math.ceil(math.log2(tp))),
        }[algorithm]
        assert (ar.link_bytes, ar.collective.hops) == (sent, hops)
        call = default_stack(hw).allreduce
        expected = call.call_s + hops * link.latency_s + sent / bw
        assert collective_time(ar, link, call) == pytest.approx(expected, rel=1e-12)


def test_a_full_mesh_pair_uses_one_link_and_a_switch_all_of_them() -> None:
    """MI300X's 448 GB/s is seven 64 GB/s peer links: a TP-2 pair has one of them, TP 8
    all seven; behind NVSwitch every degree gets the whole bandwidth."""
    mi = load_hardware_spec("mi300x").link
    assert mi.topology == "full_mesh"
    assert mi.group_bandwidth_bytes_per_s(2) == pytest.approx(mi.per_peer_bandwidth_bytes_per_s)
    assert mi.group_bandwidth_bytes_per_s(8) == pytest.approx(7 * mi.per_peer_bandwidth_bytes_per_s)
    h100 = load_hardware_spec("h100-sxm").link
    assert h100.group_bandwidth_bytes_per_s(2) == h100.group_bandwidth_bytes_per_s(8)
    spec = load_model_spec("llama-3.1-70b")
    run = Execution(tp=2, allreduce="ring")
    ar = next(
        k
        for k in step_kernels(spec, StepShape.prefill(1, 2048), execution=run)
        if k.name == "attn_all_reduce"
    )
    st = default_stack(load_hardware_spec("mi300x")).allreduce
    pair = collective_time(ar, mi, st)
    whole = collective_time(
        ar, dataclasses.replace(mi, per_peer_bandwidth_bytes_per_s=None, topology="switch"), st
    )
    assert pair > 5 * whole


def test_auto_allreduce_switches_from_one_shot_to_two_shot_at_the_threshold() -> None:
    spec = load_model_spec("llama-3.1-70b")
    run = Execution(tp=4, allreduce="auto", one_shot_max_bytes=512 * 1024)
    small = step_kernels(spec, StepShape.decode(1, 64), execution=run)
    large = step_kernels(spec, StepShape.prefill(1, 1024), execution=run)
    pick = {k.collective.algorithm for k in small if k.name == "mlp_all_reduce"}
    assert pick == {"one_shot"}
    assert {k.collective.algorithm for k in large if k.name == "mlp_all_reduce"} == {"two_shot"}


def test_tensor_parallel_steps_reduce_the_embedding_and_gather_the_logits() -> None:
    spec = load_model_spec("llama-3.1-70b")
    one = step_kernels(spec, StepShape.decode(4, 64))
    four = step_kernels(spec, StepShape.decode(4, 64), execution=Execution(tp=4))
    names = [k.name for k in four]
    assert names[:2] == ["embed_tokens", "embed_all_reduce"] and names[-1] == "logits_all_gather"
    assert "embed_all_reduce" not in [k.name for k in one]
    embed = four[0]
    assert embed.bytes_read == 1 * spec.hidden_size * 2  # ceil(4 / 4) rows on the busiest device
    gather = four[-1]
    assert gather.link_bytes == 3 * (4 * spec.vocab_size * 2) // 4
    lm_head = next(k for k in four if k.name == "lm_head")
    assert lm_head.shape == MatmulShape(4, spec.vocab_size // 4, spec.hidden_size)


def test_a_tiny_on_chip_memory_is_refused_in_bounded_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """It used to hang: one event per chunk of a 100-byte buffer, billions of them."""
    import subprocess
    import sys

    import yaml

    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.hardware_yaml import hardware_to_yaml_dict

    data = hardware_to_yaml_dict(load_hardware_spec("l40s"))
    data["on_chip"]["sram_mb"] = 1e-4
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    argv = [sys.executable, "-m", "dartsim", "simulate", "--model", "llama-3.1-8b", "--hw", str(path),
            "--prefetch", "--gen-len", "4", "--quiet"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "too small to stream weights through" in done.stderr and len(done.stderr.strip().splitlines()) == 1
