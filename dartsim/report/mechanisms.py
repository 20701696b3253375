"""What each mechanism of the device model contributes to a decode step, and how DART's
speedup moves with the software stack (`dartsim report mechanisms`).

Breakdown: the step is simulated with every mechanism, then with one mechanism at a time
made ideal (its cost set to zero or its efficiency to one); the difference is what that
mechanism costs in the step. Mechanisms overlap, so the differences need not add up to
the step; the table says how much is left once all of them are ideal (the bytes and FLOPs
at peak rates).

Sensitivity: a dense decode step against the same step with a stated kept fraction of
FFN neurons in every layer (DART's steady state between re-triggers), under each shipped
GPU software stack (each with the values fitted on this device where it has them), and
under the hardware's default stack with ring instead of its all-reduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from dartsim.engine.replay_config import ReplayConfig
from dartsim.engine.sim import simulate_step
from dartsim.report import render
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.specs.stack import StackSpec, default_stack, stack_for
from dartsim.units import MS_PER_S
from dartsim.workload import Precision, StepShape, kept_count, step_kernels

CONTEXT = 1024
UNLIMITED = 1e30
GPU_STACKS = ("trtllm-0.9", "trtllm-graphs", "vllm", "vllm-v0", "sglang", "gpt-fast", "pytorch-eager")
"""The stacks of the sensitivity table on a GPU (the shipped NVIDIA-side presets)."""
Setup = tuple[HardwareSpec, StackSpec]


def _instant_launch(hw: HardwareSpec, st: StackSpec) -> Setup:
    la = dataclasses.replace(
        st.launch, host_issue_s=0.0, step_overhead_s=0.0, kernel_gap_s=0.0, graph_launch_s=0.0
    )
    return hw, dataclasses.replace(st, launch=la)


def _no_latency(hw: HardwareSpec, st: StackSpec) -> Setup:
    noc = dataclasses.replace(hw.noc, hop_latency_s=0.0)
    att = dataclasses.replace(st.attention, decode_fixed_s=0.0)
    hw = dataclasses.replace(hw, memory=dataclasses.replace(hw.memory, latency_s=0.0), noc=noc)
    return hw, dataclasses.replace(st, attention=att)


def _ideal_link(hw: HardwareSpec, st: StackSpec) -> Setup:
    link = dataclasses.replace(hw.link, latency_s=0.0, bandwidth_bytes_per_s_per_direction=UNLIMITED,
                               per_peer_bandwidth_bytes_per_s=None)  # fmt: skip
    ar = dataclasses.replace(st.allreduce, call_s=0.0)
    return dataclasses.replace(hw, link=link), dataclasses.replace(st, allreduce=ar)


def _ideal_compute(hw: HardwareSpec, st: StackSpec) -> Setup:
    g = dataclasses.replace(hw.compute.gemm, efficiency=1.0, k_overhead=0.0, m_overhead=0.0)
    c = dataclasses.replace(hw.compute, gemm=g, vector_efficiency=1.0)
    att = dataclasses.replace(
        st.attention, prefill_efficiency=dict.fromkeys(st.attention.prefill_efficiency, 1.0)
    )
    return dataclasses.replace(hw, compute=c), dataclasses.replace(st, attention=att)


def _ideal_memory(hw: HardwareSpec, st: StackSpec) -> Setup:
    mem = dataclasses.replace(hw.memory, efficiency=1.0)
    noc = dataclasses.replace(hw.noc, link_bandwidth_bytes_per_s=UNLIMITED)
    att = dataclasses.replace(st.attention, decode_bandwidth_efficiency=1.0, gqa_efficiency=1.0)
    return dataclasses.replace(hw, memory=mem, noc=noc), dataclasses.replace(st, attention=att)


MECHANISMS: tuple[tuple[str, Callable[[HardwareSpec, StackSpec], Setup]], ...] = (
    ("kernel launch (step overhead, graph launch, per-kernel gap, host issue)", _instant_launch),
    ("DRAM and on-chip latency, decode attention's fixed time", _no_latency),
    ("collectives (fixed cost, hops, link bandwidth)", _ideal_link),
    ("compute efficiency (tiles, waves, ramps, asymptotes)", _ideal_compute),
    ("memory efficiency (DRAM below peak, network, KV streaming)", _ideal_memory),
)


def _step_time(spec: ModelSpec, hw: HardwareSpec, st: StackSpec, tp: int, kept: list[int] | None,
               prec: Precision, allreduce: str | None = None) -> float:  # fmt: skip
    config = ReplayConfig(tp=tp, precision=prec, stack=st, allreduce=allreduce)
    dev = config.device(hw)
    kernels = step_kernels(spec, StepShape.decode(1, CONTEXT), kept, prec, execution=config.execution(dev))
    return simulate_step(kernels, dev, phase="decode").time_s


def breakdown(spec: ModelSpec, hw: HardwareSpec, tp: int, prec: Precision) -> dict[str, Any]:
    st = default_stack(hw)
    full = _step_time(spec, hw, st, tp, None, prec)
    rows = []
    ideal = (hw, st)
    for name, make in MECHANISMS:
        without = _step_time(spec, *make(hw, st), tp, None, prec)
        rows.append({"mechanism": name, "step_s": without, "cost_s": full - without})
        ideal = make(*ideal)
    floor = _step_time(spec, *ideal, tp, None, prec)
    return {"full_s": full, "stack": st.label, "rows": rows, "all_ideal_s": floor}


def variants(hw: HardwareSpec) -> list[tuple[str, StackSpec, str | None]]:
    """(label, stack, all-reduce algorithm) of the sensitivity study."""
    own = default_stack(hw)
    names = GPU_STACKS if own.name in GPU_STACKS else (own.name,)
    out: list[tuple[str, StackSpec, str | None]] = []
    for name in names:
        st = stack_for(name, hw)
        out.append((f"{st.label}{' (default)' if name == own.name else ''}", st, None))
    out.append((f"{own.label}, ring all-reduce", own, "ring"))
    return out


def sensitivity(
    spec: ModelSpec, hw: HardwareSpec, tp: int, keep: float, prec: Precision
) -> list[dict[str, Any]]:
    kept = [kept_count(keep, spec.intermediate_size)] * spec.num_layers
    out = []
    for label, st, allreduce in variants(hw):
        dense = _step_time(spec, hw, st, tp, None, prec, allreduce)
        sparse = _step_time(spec, hw, st, tp, kept, prec, allreduce)
        out.append(
            {"variant": label, "dense_tpot_s": dense, "sparse_tpot_s": sparse, "speedup": dense / sparse}
        )
    return out


def render_report(spec: ModelSpec, hw: HardwareSpec, tps: list[int], keep: float, prec: Precision) -> str:
    lines = [
        f"# Mechanisms of a {spec.name} decode step on {hw.name}",
        "",
        f"Batch 1, context {CONTEXT}, weights {prec.weight.name}, KV cache {prec.kv_cache.name}, activations "
        f"{prec.activation.name}. Regenerate with `dartsim report mechanisms --model {spec.name} "
        f"--hw {hw.name} --tp {','.join(map(str, tps))} --keep {keep}`. "
        + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
    ]
    for tp in tps:
        b = breakdown(spec, hw, tp, prec)
        lines.append(
            f"## Breakdown at TP {tp}: {b['full_s'] * MS_PER_S:.3f} ms per step under {b['stack']}\n"
        )
        table = [
            [
                r["mechanism"],
                f"{r['step_s'] * MS_PER_S:.3f}",
                f"{r['cost_s'] * MS_PER_S:.3f}",
                f"{r['cost_s'] / b['full_s']:.1%}",
            ]
            for r in b["rows"]
        ]
        table.append(
            ["all of the above ideal (bytes and FLOPs at peak)", f"{b['all_ideal_s'] * MS_PER_S:.3f}", "", ""]
        )
        lines.append(
            render.markdown_table(["made ideal", "step (ms)", "its cost (ms)", "share of the step"], table)
        )
    lines += ["", " ".join(__doc__.split("\n\n")[2].split()), ""]
    for tp in tps:
        lines.append(f"## DART speedup at TP {tp}, {keep:.0%} of FFN neurons kept\n")
        rows = sensitivity(spec, hw, tp, keep, prec)
        table = [
            [
                r["variant"],
                f"{r['dense_tpot_s'] * MS_PER_S:.3f}",
                f"{r['sparse_tpot_s'] * MS_PER_S:.3f}",
                f"{r['speedup']:.3f}",
            ]
            for r in rows
        ]
        lines.append(
            render.markdown_table(["stack", "dense TPOT (ms)", "sparse TPOT (ms)", "speedup"], table)
        )
    return "\n".join(lines)
