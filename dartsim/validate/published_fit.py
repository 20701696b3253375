"""Fitting calibrated preset fields to the published measurements' calibration rows
(`dartsim validate --published --fit`).

The fit (`fit_presets`) changes only the fields a preset lists under `calibrated` among
FITTABLE, per device, on that device's calibration rows, minimising the mean squared log
error. The launch and collective fields enter every step's time linearly in graph mode
(one step overhead per step, one gap per kernel, one fixed cost per collective), so each
row's prediction is base + sum(coefficient x field), with the coefficients measured by
simulating, and a coarse-then-fine grid searches them. The GEMM asymptote is not linear:
a golden-section search over it refits the linear fields at every trial.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.hardware_yaml import override
from dartsim.validate.published import Dataset, Predictor, Row, device_hardware

LINEAR_FIELDS = {
    "launch.kernel_gap_us": (0.0, 10.0),
    "launch.step_overhead_us": (0.0, 500.0),
    "link.allreduce_call_us": (0.0, 100.0),
}
"""Fields that enter every step's time linearly in graph mode, with the range a fit
searches (microseconds)."""
NONLINEAR_FIELDS = {"compute.gemm.efficiency": (0.2, 1.0)}
"""Fields searched by golden section, each trial refitting the linear fields."""
COARSE_POINTS = 21
FINE_POINTS = 11
GOLDEN_STEPS = 9


@dataclass(frozen=True)
class DeviceFit:
    device: str
    fields: dict[str, float]
    """Fitted values, in the fields' YAML units."""
    rows: int
    rms_log_error: float


def _linear_terms(
    rows: Sequence[Row], hw: HardwareSpec, fields: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the (ttft, tpot) at all fitted fields 0, and their change per unit of each
    field, [rows, 2] and [rows, fields, 2]."""
    zero = override(hw, dict.fromkeys(fields, 0.0), "fit: zero")
    base_pred = Predictor(zero)
    base = np.array([[t if t is not None else 0.0 for t in base_pred.times(r)] for r in rows])
    slopes = np.zeros((len(rows), len(fields), 2))
    for j, name in enumerate(fields):
        unit = Predictor(override(hw, {**dict.fromkeys(fields, 0.0), name: 1.0}, "fit: unit"))
        for i, r in enumerate(rows):
            t = unit.times(r)
            slopes[i, j] = [t[0] - base[i, 0], (t[1] or 0.0) - base[i, 1]]
    return base, slopes


def _fit_linear(
    rows: Sequence[Row], hw: HardwareSpec, fields: Sequence[str]
) -> tuple[dict[str, float], float]:
    """The linear fields minimising the mean squared log error, and that error."""
    base, slopes = _linear_terms(rows, hw, fields)
    measured = np.log([r.seconds_or_rate for r in rows])
    bounds = [LINEAR_FIELDS[f] for f in fields]

    def loss_of(combos: np.ndarray) -> np.ndarray:
        ttft = base[:, None, 0] + np.einsum("rf,cf->rc", slopes[:, :, 0], combos)
        tpot = base[:, None, 1] + np.einsum("rf,cf->rc", slopes[:, :, 1], combos)
        predicted = np.stack([_vector_metric(r, ttft[i], tpot[i]) for i, r in enumerate(rows)])
        return np.mean((np.log(np.maximum(predicted, 1e-12)) - measured[:, None]) ** 2, axis=0)

    grids = [np.linspace(lo, hi, COARSE_POINTS) for lo, hi in bounds]
    combos = np.array(list(itertools.product(*grids)))
    loss = loss_of(combos)
    best = combos[int(np.argmin(loss))]
    steps = [(hi - lo) / (COARSE_POINTS - 1) for lo, hi in bounds]
    fine = [
        np.clip(np.linspace(b - st, b + st, FINE_POINTS), lo, hi)
        for b, st, (lo, hi) in zip(best, steps, bounds, strict=True)
    ]
    combos = np.array(list(itertools.product(*fine)))
    loss = loss_of(combos)
    i = int(np.argmin(loss))
    return {f: round(float(combos[i, j]), 3) for j, f in enumerate(fields)}, float(loss[i])


def fit_device(rows: Sequence[Row], hw: HardwareSpec) -> DeviceFit | None:
    """The calibrated fields of `hw` fitted to its calibration `rows` (None: nothing to fit)."""
    linear = [f for f in LINEAR_FIELDS if f in hw.calibrated]
    nonlinear = [f for f in NONLINEAR_FIELDS if f in hw.calibrated]
    if not rows or not (linear or nonlinear):
        return None
    if not nonlinear:
        values, loss = _fit_linear(rows, hw, linear)
        return DeviceFit(hw.name, values, len(rows), math.sqrt(loss))
    (name,) = nonlinear
    lo, hi = NONLINEAR_FIELDS[name]
    trials: dict[float, tuple[dict[str, float], float]] = {}

    def trial(x: float) -> float:
        x = round(x, 4)
        if x not in trials:
            trials[x] = _fit_linear(rows, override(hw, {name: x}, "fit: trial"), linear)
        return trials[x][1]

    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(GOLDEN_STEPS):
        if trial(c) <= trial(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    x = min(trials, key=lambda k: trials[k][1])
    values, loss = trials[x]
    return DeviceFit(hw.name, {name: x, **values}, len(rows), math.sqrt(loss))


def _vector_metric(row: Row, ttft: np.ndarray, tpot: np.ndarray) -> np.ndarray:
    if row.metric == "ttft":
        return ttft
    if row.metric == "tpot":
        return tpot
    e2e = ttft + (row.output_tokens - 1) * tpot
    return e2e if row.metric == "e2e_latency" else row.output_tokens / e2e


def fit_presets(data: Dataset, hw_dir: str | None = None) -> list[tuple[HardwareSpec, DeviceFit | None]]:
    """Every device of the data with its calibrated fields fitted on its calibration rows;
    the returned specs carry the fitted values and say so in their sources."""
    out = []
    for device in sorted({r.device for r in data.rows}):
        hw = device_hardware(device, hw_dir)
        rows = [r for r in data.rows if r.device == device and r.split == "calibration"]
        fit = fit_device(rows, hw)
        if fit is not None:
            sources = sorted({r.source for r in rows})
            note = (
                f"{FIT_PHRASE} to the {fit.rows} calibration rows of "
                f"{Path(data.path).name} on this device (sources: {', '.join(sources)}); "
                f"rms log error {fit.rms_log_error:.3f}"
            )
            hw = _with_fitted(hw, fit.fields, note)
        out.append((hw, fit))
    return out


FIT_PHRASE = "fitted by dartsim validate --published --fit"
WAS = "; was: "


def _with_fitted(hw: HardwareSpec, values: dict[str, float], note: str) -> HardwareSpec:
    """`hw` with fitted values; each field's source says so, keeping what it said before
    the first fit (a re-fit replaces the note instead of stacking them)."""
    for path, value in values.items():
        section = path.rpartition(".")[0]
        prior = hw.sources.get(path) or hw.sources.get(section, "")
        if prior.startswith(FIT_PHRASE) and WAS in prior:
            prior = prior.split(WAS, 1)[1]
        lo, hi = {**LINEAR_FIELDS, **NONLINEAR_FIELDS}[path]
        edge = f" (at the edge of the searched range [{lo:g}, {hi:g}])" if value in (lo, hi) else ""
        hw = override(hw, {path: value}, "x")
        hw = replace(hw, sources={**hw.sources, path: f"{note}{edge}{WAS}{prior}"})
    return hw
