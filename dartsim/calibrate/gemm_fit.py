"""Fitting a device's GEMM efficiency fields to measured GEMM times.

The model is the engine's own (engine/efficiency.py): a GEMM of shape (m, n, k) takes
  launch overhead + max(memory path + latency, FLOPs / (peak x E x S(shape) x Rk x Rm))
where S is the wave and pad factor fixed by the tile fields, Rk = kps / (kps + k_overhead)
per split of K, and Rm = m / (m + m_overhead) (1 for a single row). The three calibrated fields E
(`compute.gemm.efficiency`), `k_overhead` and `m_overhead` are chosen to minimise the
mean squared log error over the measurements, by a grid search refined twice around the
best point. Nothing else of the device changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from dartsim.engine.efficiency import tiling
from dartsim.engine.machine import device, kernel_cost
from dartsim.engine.sim import simulate_step
from dartsim.specs.dtypes import DType
from dartsim.specs.hardware import HardwareSpec
from dartsim.workload import Precision
from dartsim.workload.kernels import Component
from dartsim.workload.ops import gemm

EFFICIENCY_GRID = np.linspace(0.02, 1.0, 50)
K_OVERHEAD_GRID = np.concatenate([[0.0], np.geomspace(4.0, 16384.0, 40)])
M_OVERHEAD_GRID = np.concatenate([[0.0], np.geomspace(0.5, 4096.0, 36)])
REFINEMENTS = 2


@dataclass(frozen=True)
class GemmSample:
    """One measured GEMM: x[m, k] @ W[k, n] at `dtype`, `seconds` per call."""

    m: int
    n: int
    k: int
    dtype: DType
    seconds: float


@dataclass(frozen=True)
class GemmFit:
    efficiency: float
    k_overhead: float
    m_overhead: float
    rms_log_error: float
    """Root mean square of log(predicted / measured) at the fitted values."""


def _kernel(sample: GemmSample):
    prec = Precision(weight=sample.dtype, activation=sample.dtype, kv_cache=sample.dtype)
    return gemm("gemm", None, Component.MLP, sample.m, sample.k, sample.n, "x", "y", "W", prec)


def predict_gemm_seconds(sample: GemmSample, hw: HardwareSpec, call_overhead_s: float | None = None) -> float:
    """Seconds per call of back-to-back identical GEMMs on `hw` (the engine's rule), or
    `call_overhead_s` plus the kernel's body when given."""
    k = _kernel(sample)
    dev = device(hw)
    if call_overhead_s is not None:
        cost = kernel_cost(k, dev)
        return call_overhead_s + max(cost.memory_path_s + dev.memory_latency_s, cost.compute_s)
    return simulate_step([k, k], dev).time_s - simulate_step([k], dev).time_s


FIELDS = ("efficiency", "k_overhead", "m_overhead")


def fit_gemm(
    samples: Sequence[GemmSample],
    hw: HardwareSpec,
    fields: Sequence[str] = FIELDS,
    call_overhead_s: float | None = None,
) -> GemmFit:
    """The GEMM efficiency fields that best explain `samples` on `hw`; fields not named in
    `fields` keep `hw`'s values. `call_overhead_s` replaces the device's per-kernel launch
    cost when the samples were timed as single library calls (a CPU microbenchmark calls
    one operation, where a modelled kernel stands for several)."""
    if not samples:
        raise ValueError("no GEMM samples to fit")
    dev = device(hw)
    unit = replace(hw.compute, gemm=replace(hw.compute.gemm, efficiency=1.0, k_overhead=0.0, m_overhead=0.0))
    measured = np.log([s.seconds for s in samples])
    fixed, ideal, kps, kscale, ms = [], [], [], [], []
    for s in samples:
        kernel = _kernel(s)
        cost = kernel_cost(kernel, dev)
        # Launch overhead and the memory path do not depend on the fitted fields.
        overhead = predict_gemm_seconds(s, replace(hw, compute=unit))
        body_mem = cost.memory_path_s + dev.memory_latency_s
        assert kernel.shape is not None
        t = tiling(kernel.shape, hw.compute)
        compute_ideal = kernel.flops_matmul / (
            hw.tensor_flops_per_s(s.dtype) * t.wave_efficiency * t.pad_efficiency
        )
        launch = overhead - max(body_mem, compute_ideal) if call_overhead_s is None else call_overhead_s
        fixed.append((launch, body_mem))
        ideal.append(compute_ideal)
        kps.append(t.k_per_split)
        kscale.append(t.k_overhead_scale)
        ms.append(s.m)
    launch_s = np.array([f[0] for f in fixed])[:, None, None, None]
    mem_s = np.array([f[1] for f in fixed])[:, None, None, None]
    ideal_s = np.array(ideal)[:, None, None, None]
    kps_a = np.array(kps, dtype=float)[:, None, None, None]
    kscale_a = np.array(kscale, dtype=float)[:, None, None, None]
    m_a = np.array(ms, dtype=float)[:, None, None, None]

    def search(
        e_grid: np.ndarray, k_grid: np.ndarray, m_grid: np.ndarray
    ) -> tuple[float, float, float, float]:
        e = e_grid[None, :, None, None]
        k0 = k_grid[None, None, :, None]
        m0 = m_grid[None, None, None, :]
        m_ramp = np.where(m_a == 1, 1.0, m_a / (m_a + m0))  # a single row runs as a GEMV: no ramp
        compute = ideal_s / (e * kps_a / (kps_a + k0 * kscale_a) * m_ramp)
        predicted = launch_s + np.maximum(mem_s, compute)
        loss = np.mean((np.log(predicted) - measured[:, None, None, None]) ** 2, axis=0)
        i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
        return float(e_grid[i]), float(k_grid[j]), float(m_grid[k]), float(loss[i, j, k])

    g = hw.compute.gemm
    start = {"efficiency": EFFICIENCY_GRID, "k_overhead": K_OVERHEAD_GRID, "m_overhead": M_OVERHEAD_GRID}
    grids = {f: start[f] if f in fields else np.array([getattr(g, f)]) for f in FIELDS}
    best = search(grids["efficiency"], grids["k_overhead"], grids["m_overhead"])
    for _ in range(REFINEMENTS):
        e, k0, m0, _ = best
        best = search(
            np.clip(np.linspace(e * 0.9, e * 1.1, 41), 1e-3, 1.0)
            if "efficiency" in fields
            else grids["efficiency"],
            _around(k0, K_OVERHEAD_GRID) if "k_overhead" in fields else grids["k_overhead"],
            _around(m0, M_OVERHEAD_GRID) if "m_overhead" in fields else grids["m_overhead"],
        )
    e, k0, m0, loss = best
    return GemmFit(round(e, 4), round(k0, 1), round(m0, 2), math.sqrt(loss))


def _around(value: float, grid: np.ndarray) -> np.ndarray:
    """A finer grid around `value` (zero stays a candidate)."""
    if value == 0.0:
        return np.concatenate([[0.0], np.geomspace(grid[1] / 4, grid[1] * 2, 20)])
    return np.concatenate([[0.0], np.geomspace(value / 1.5, value * 1.5, 31)])
