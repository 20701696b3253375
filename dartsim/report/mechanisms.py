"""What each mechanism of the device model contributes to a decode step, and how DART's
speedup moves with the software-stack assumptions (`dartsim report mechanisms`).

Breakdown: the step is simulated with every mechanism, then with one mechanism at a time
made ideal (its cost set to zero or its efficiency to one); the difference is what that
mechanism costs in the step. Mechanisms overlap, so the differences need not add up to
the step; the table says how much is left once all of them are ideal (the bytes and FLOPs
at peak rates).

Sensitivity: a dense decode step against the same step with a stated kept fraction of
FFN neurons in every layer (DART's steady state between re-triggers), under the preset's
launch and collective fields and under alternatives: CUDA-graph launch gaps, PyTorch-eager
host issue, NCCL-like all-reduce costs, ring instead of one-shot all-reduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from dartsim.engine.machine import device
from dartsim.engine.sim import simulate_step
from dartsim.report import render
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.hardware_yaml import override
from dartsim.specs.model import ModelSpec
from dartsim.units import MS_PER_S
from dartsim.workload import Execution, Precision, StepShape, kept_count, step_kernels

CONTEXT = 1024
UNLIMITED = 1e30


def _instant_launch(hw: HardwareSpec) -> HardwareSpec:
    la = dataclasses.replace(hw.launch, host_issue_s=0.0, step_overhead_s=0.0, kernel_gap_s=0.0)
    return dataclasses.replace(hw, launch=la)


def _no_latency(hw: HardwareSpec) -> HardwareSpec:
    noc = dataclasses.replace(hw.noc, hop_latency_s=0.0)
    return dataclasses.replace(hw, memory=dataclasses.replace(hw.memory, latency_s=0.0), noc=noc)


def _ideal_link(hw: HardwareSpec) -> HardwareSpec:
    link = dataclasses.replace(
        hw.link, allreduce_call_s=0.0, latency_s=0.0, bandwidth_bytes_per_s_per_direction=UNLIMITED
    )
    return dataclasses.replace(hw, link=link)


def _ideal_compute(hw: HardwareSpec) -> HardwareSpec:
    g = dataclasses.replace(hw.compute.gemm, efficiency=1.0, k_overhead=0.0, m_overhead=0.0)
    c = dataclasses.replace(hw.compute, gemm=g, attention_efficiency=1.0, vector_efficiency=1.0)
    return dataclasses.replace(hw, compute=c)


def _ideal_memory(hw: HardwareSpec) -> HardwareSpec:
    mem = dataclasses.replace(hw.memory, efficiency=1.0)
    noc = dataclasses.replace(hw.noc, link_bandwidth_bytes_per_s=UNLIMITED)
    return dataclasses.replace(hw, memory=mem, noc=noc)


MECHANISMS: tuple[tuple[str, Callable[[HardwareSpec], HardwareSpec]], ...] = (
    ("kernel launch (step overhead, per-kernel gap, host issue)", _instant_launch),
    ("DRAM and on-chip latency", _no_latency),
    ("collectives (fixed cost, hops, link bandwidth)", _ideal_link),
    ("compute efficiency (tiles, waves, ramps, asymptotes)", _ideal_compute),
    ("memory efficiency (DRAM below peak, network)", _ideal_memory),
)


def _step_time(spec: ModelSpec, hw: HardwareSpec, tp: int, kept: list[int] | None, prec: Precision,
               allreduce: str | None = None, launch: str | None = None) -> float:  # fmt: skip
    run = Execution(tp=tp, allreduce=allreduce or hw.link.allreduce_algorithm,
                    one_shot_max_bytes=int(hw.link.one_shot_max_bytes))  # fmt: skip
    kernels = step_kernels(spec, StepShape.decode(1, CONTEXT), kept, prec, execution=run)
    return simulate_step(kernels, device(hw, launch=launch)).time_s


def breakdown(spec: ModelSpec, hw: HardwareSpec, tp: int, prec: Precision) -> dict[str, Any]:
    full = _step_time(spec, hw, tp, None, prec)
    rows = []
    ideal = hw
    for name, make in MECHANISMS:
        without = _step_time(spec, make(hw), tp, None, prec)
        rows.append({"mechanism": name, "step_s": without, "cost_s": full - without})
        ideal = make(ideal)
    floor = _step_time(spec, ideal, tp, None, prec)
    return {"full_s": full, "rows": rows, "all_ideal_s": floor}


def variants(hw: HardwareSpec) -> list[tuple[str, HardwareSpec, str | None, str | None]]:
    """(label, hardware, all-reduce algorithm, launch mode) of the sensitivity study."""
    return [
        ("preset as fitted", hw, None, None),
        ("CUDA-graph stack: kernel gap 0.6 us, step overhead 20 us",
         override(hw, {"launch.kernel_gap_us": 0.6, "launch.step_overhead_us": 20.0}, "study"),
         None, "graph"),
        ("PyTorch eager: host issue 20 us per kernel, gap 0.6 us",
         override(hw, {"launch.host_issue_us": 20.0, "launch.kernel_gap_us": 0.6}, "study"), None, "eager"),
        ("NCCL-like all-reduce: 25 us per call",
         override(hw, {"link.allreduce_call_us": 25.0}, "study"), None, None),
        ("ring all-reduce instead of one-shot", hw, "ring", None),
    ]  # fmt: skip


def sensitivity(
    spec: ModelSpec, hw: HardwareSpec, tp: int, keep: float, prec: Precision
) -> list[dict[str, Any]]:
    kept = [kept_count(keep, spec.intermediate_size)] * spec.num_layers
    out = []
    for label, variant, allreduce, launch in variants(hw):
        dense = _step_time(spec, variant, tp, None, prec, allreduce, launch)
        sparse = _step_time(spec, variant, tp, kept, prec, allreduce, launch)
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
        lines.append(f"## Breakdown at TP {tp}: {b['full_s'] * MS_PER_S:.3f} ms per step\n")
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
