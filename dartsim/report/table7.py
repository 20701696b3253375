"""Table 7 of the DART paper, reproduced from the workload cost model.

The paper prints attention and MLP memory traffic and compute of Llama-3.1-70B and 8B,
dense and "70% sparse", summed over all layers of one step that pushes 128 tokens through
the model, each attending to 128 positions, with FP8 weights and KV cache and FP16
activations. Its "GB" are GiB and its "TFLOPS" are FLOP counts in units of 2^40.

dartsim computes every cell from `dartsim.workload`; the paper's printed values are kept
only to be printed beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dartsim.engine.energy import Counts as _Counts
from dartsim.engine.energy import energy as _energy
from dartsim.specs.dtypes import FP8, FP16
from dartsim.specs.hardware import EnergySpec
from dartsim.specs.model import ModelSpec
from dartsim.units import BINARY, GiB, TiFLOP, UnitSystem
from dartsim.workload import (
    Component,
    CostTotals,
    Precision,
    StepShape,
    kept_count,
    step_kernels,
    totals_by_component,
)

PAPER_MODELS = ("llama-3.1-70b", "llama-3.1-8b")
PAPER_TOKENS = 128
PAPER_CONTEXT = 128
PAPER_PRECISION = Precision(weight=FP8, activation=FP16, kv_cache=FP8)
PAPER_SPARSITY_LABEL = 0.70
"""The paper's column heading: "SPARSE (70%)", i.e. 30% of FFN neurons kept."""
DEFAULT_KEEP = 1.0 - PAPER_SPARSITY_LABEL

COMPONENTS = (Component.ATTENTION, Component.MLP)
METRICS = ("memory", "compute")
CONFIGS = ("dense", "sparse")

PAPER_CELLS: dict[tuple[str, str, str, str], float] = {
    # (model, component, metric, config) -> printed value (GiB or 2^40 FLOP)
    ("llama-3.1-70b", "attention", "memory", "dense"): 15.08,
    ("llama-3.1-70b", "attention", "memory", "sparse"): 15.08,
    ("llama-3.1-70b", "attention", "compute", "dense"): 2.85,
    ("llama-3.1-70b", "attention", "compute", "sparse"): 2.85,
    ("llama-3.1-70b", "mlp", "memory", "dense"): 53.91,
    ("llama-3.1-70b", "mlp", "memory", "sparse"): 17.14,
    ("llama-3.1-70b", "mlp", "compute", "dense"): 13.12,
    ("llama-3.1-70b", "mlp", "compute", "sparse"): 4.12,
    ("llama-3.1-8b", "attention", "memory", "dense"): 2.53,
    ("llama-3.1-8b", "attention", "memory", "sparse"): 2.53,
    ("llama-3.1-8b", "attention", "compute", "dense"): 0.32,
    ("llama-3.1-8b", "attention", "compute", "sparse"): 0.32,
    ("llama-3.1-8b", "mlp", "memory", "dense"): 5.53,
    ("llama-3.1-8b", "mlp", "memory", "sparse"): 1.50,
    ("llama-3.1-8b", "mlp", "compute", "dense"): 1.31,
    ("llama-3.1-8b", "mlp", "compute", "sparse"): 0.35,
}
PAPER_UNITS = {"memory": GiB, "compute": TiFLOP}


@dataclass(frozen=True)
class Table7Workload:
    """The step Table 7 describes: a decode step of `tokens` sequences at `context`."""

    tokens: int = PAPER_TOKENS
    context: int = PAPER_CONTEXT
    precision: Precision = PAPER_PRECISION

    @property
    def shape(self) -> StepShape:
        return StepShape.decode(batch=self.tokens, context_len=self.context)

    @property
    def is_papers(self) -> bool:
        return (
            self.tokens == PAPER_TOKENS
            and self.context == PAPER_CONTEXT
            and self.precision == PAPER_PRECISION
        )

    def describe(self) -> str:
        p = self.precision
        return (
            f"one decode step of {self.tokens} tokens (batch {self.tokens}), each attending to "
            f"{self.context} positions; weights {p.weight.name}, activations "
            f"{p.activation.name}, KV cache {p.kv_cache.name}; totals over all layers"
        )


@dataclass(frozen=True)
class Table7Record:
    """One cell. `value` and `paper` are in `unit`; `paper_keep` is the kept fraction of
    FFN neurons under which dartsim's model gives the paper's printed value."""

    model: str
    component: str
    metric: str
    config: str
    keep: float
    value: float
    unit: str
    paper: float | None
    paper_keep: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "component": self.component,
            "metric": self.metric,
            "config": self.config,
            "keep": self.keep,
            "value": self.value,
            "unit": self.unit,
            "paper": self.paper,
            "paper_keep": self.paper_keep,
        }


def _component_totals(spec: ModelSpec, workload: Table7Workload, kept: int) -> dict[Component, CostTotals]:
    kernels = step_kernels(spec, workload.shape, [kept] * spec.num_layers, precision=workload.precision)
    return totals_by_component(kernels)


def _metric(totals: CostTotals, metric: str) -> int:
    """Table 7's memory is DRAM bytes read and written; its compute is matmul FLOPs (the
    FP8 tensor-core work; vector work would not round to the printed cells)."""
    return totals.bytes if metric == "memory" else totals.flops_matmul


def _implied_keep(spec: ModelSpec, workload: Table7Workload, metric: str, target: float) -> float:
    """Kept fraction at which the model's MLP `metric` equals `target` (raw SI units).

    MLP bytes and FLOPs are affine in the kept-neuron count, so two evaluations of the
    workload model (k = 0 and k = m) determine the line; nothing is re-derived here.
    """
    m = spec.intermediate_size
    at_zero = _metric(_component_totals(spec, workload, 0)[Component.MLP], metric)
    at_full = _metric(_component_totals(spec, workload, m)[Component.MLP], metric)
    return (target - at_zero) / (at_full - at_zero)


def _dynamic_energy_j(totals: CostTotals, energy: EnergySpec, fmt: str) -> float:
    """The step's dynamic energy (engine/energy.py with no time: Table 7 has none, so no
    static power): DRAM bytes and their on-chip trip, and every FLOP at the tensor rate."""
    return _energy(energy, _Counts(totals.bytes, totals.flops, 0.0), fmt).j


def table7_records(
    specs: Sequence[ModelSpec],
    workload: Table7Workload,
    keep: float = DEFAULT_KEEP,
    units: UnitSystem = BINARY,
    energy: EnergySpec | None = None,
) -> list[Table7Record]:
    """All cells, in the paper's order: per model, component, metric, dense then sparse;
    with `energy` (a hardware file's energy section) a dynamic-energy row per component."""
    records: list[Table7Record] = []
    for spec in specs:
        kept = kept_count(keep, spec.intermediate_size)
        by_config = {
            "dense": _component_totals(spec, workload, spec.intermediate_size),
            "sparse": _component_totals(spec, workload, kept),
        }
        for component in COMPONENTS:
            for metric in METRICS:
                scale = units.bytes_scale if metric == "memory" else units.flops_scale
                label = units.bytes_label if metric == "memory" else units.flops_label
                for config in CONFIGS:
                    raw = _metric(by_config[config][component], metric)
                    printed = PAPER_CELLS.get((spec.name, component.value, metric, config))
                    paper = paper_keep = None
                    if printed is not None and workload.is_papers:
                        paper_raw = printed * PAPER_UNITS[metric]
                        paper = paper_raw / scale
                        if config == "sparse" and component is Component.MLP:
                            paper_keep = _implied_keep(spec, workload, metric, paper_raw)
                    records.append(
                        Table7Record(
                            model=spec.name,
                            component=component.value,
                            metric=metric,
                            config=config,
                            keep=kept / spec.intermediate_size  # attention is never pruned
                            if config == "sparse" and component is Component.MLP
                            else 1.0,
                            value=raw / scale,
                            unit=label,
                            paper=paper,
                            paper_keep=paper_keep,
                        )
                    )
            if energy is not None:
                fmt = workload.precision.gemm_compute.name
                for config in CONFIGS:
                    records.append(
                        Table7Record(
                            model=spec.name,
                            component=component.value,
                            metric="energy",
                            config=config,
                            keep=kept / spec.intermediate_size
                            if config == "sparse" and component is Component.MLP
                            else 1.0,
                            value=_dynamic_energy_j(by_config[config][component], energy, fmt),
                            unit="J",
                            paper=None,
                            paper_keep=None,
                        )
                    )
    return records


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _diff(value: float, paper: float | None) -> str:
    """dartsim's cell minus the paper's, both as printed (two decimals)."""
    if paper is None:
        return "n/a"
    diff = round(round(value, 2) - round(paper, 2), 2)
    return "0.00" if diff == 0 else f"{diff:+.2f}"


def _wide_rows(records: Sequence[Table7Record]) -> tuple[list[str], list[list[str]]]:
    """One row per model, component and metric, dense and sparse side by side."""
    cells = {(r.model, r.component, r.metric, r.config): r for r in records}
    header = [
        "model",
        "component",
        "metric",
        "unit",
        "dense",
        "paper dense",
        "dense - paper",
        "sparse",
        "keep",
        "paper sparse",
        "paper keep",
        "sparse - paper",
    ]
    rows = []
    seen: list[tuple[str, str, str]] = []
    for r in records:
        key = (r.model, r.component, r.metric)
        if key in seen:
            continue
        seen.append(key)
        dense_key, sparse_key = (*key, "dense"), (*key, "sparse")
        dense, sparse = cells[dense_key], cells[sparse_key]
        rows.append(
            [
                r.model,
                r.component,
                r.metric,
                r.unit,
                _fmt(dense.value),
                _fmt(dense.paper),
                _diff(dense.value, dense.paper),
                _fmt(sparse.value),
                _fmt(sparse.keep, 3),
                _fmt(sparse.paper),
                _fmt(sparse.paper_keep, 3) if sparse.paper_keep is not None else "-",
                _diff(sparse.value, sparse.paper),
            ]
        )
    return header, rows


def render_table7(
    records: Sequence[Table7Record],
    workload: Table7Workload,
    requested_keep: float,
    units: UnitSystem,
    fmt: str,
) -> str:
    """The table in one of `render.FORMATS`."""
    from dartsim.report import render

    if fmt == "json":
        return render.json_text([r.as_dict() for r in records])
    if fmt == "csv":
        fields = list(records[0].as_dict()) if records else []
        return render.csv_text(fields, [list(r.as_dict().values()) for r in records])
    header, rows = _wide_rows(records)
    caption = (
        f"Attention and MLP cost: {workload.describe()}. Sparse: {requested_keep:.0%} of FFN "
        f"neurons kept in every layer (keep = exact kept fraction after rounding to whole "
        f"neurons). Memory in {units.bytes_label}, compute (matmul FLOPs) in "
        f"{units.flops_label}."
    )
    if fmt == "latex":
        return render.latex_table(header, rows, caption)
    notes = [
        "# Table 7, reproduced by dartsim",
        "",
        caption,
        "",
        render.markdown_table(header, rows),
    ]
    if workload.is_papers:
        notes += [
            'The paper prints GiB as "GB" and 2^40 FLOP as "TFLOPS". Its sparse column is'
            ' headed 70% sparse (keep 0.30); "paper keep" is the kept fraction under which'
            " dartsim's kernel model gives the paper's printed sparse cell.",
            "",
        ]
    else:
        notes += ["The workload differs from the paper's, so no paper values are shown.", ""]
    return "\n".join(notes)
