"""DART's per-layer budget: the depth factor (Eq. 5), layer importance from sensitivity,
and the iterative allocation of the pruning budget (Eq. 6), on [L] vectors of float64.

numpy, not torch: the same functions serve the recorder (rules.py converts its tensors)
and synthetic traces, which must build without torch.
"""

from __future__ import annotations

import numpy as np

from dartsim.workload.execution import kept_count

ALLOCATION_TOLERANCE = 1e-9
"""|Delta| below which Eq. 6's redistribution stops (a fraction of one layer's budget)."""
ALLOCATION_MAX_ITERATIONS = 1000
"""Eq. 6 converges in at most L iterations (a layer leaves the active set each round or
Delta reaches zero); this bound only guards against float stalls."""


def importance_paper(s_bar: np.ndarray) -> np.ndarray:
    """I = 1 - S_bar / sum_j S_bar_j: [L] -> [L]."""
    s = np.asarray(s_bar, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return np.ones_like(s)
    return 1.0 - s / total


def depth_factor(num_layers: int, alpha_e: float, alpha_l: float, beta_e: float, beta_l: float) -> np.ndarray:
    """Eq. 5: D = min(1, a_e + (1-a_e) z/b_e, a_l + (1-a_l)(1-z)/b_l), z = l/(L-1): -> [L]."""
    if num_layers == 1:
        z = np.zeros(1, dtype=np.float64)
    else:
        z = np.arange(num_layers, dtype=np.float64) / (num_layers - 1)
    early = alpha_e + (1 - alpha_e) * z / beta_e
    late = alpha_l + (1 - alpha_l) * (1 - z) / beta_l
    return np.minimum(np.minimum(np.ones_like(z), early), late)


def _weights(importance: np.ndarray, depth: np.ndarray, idx: np.ndarray) -> np.ndarray:
    w = importance[idx] * depth[idx]
    if w.sum() <= 0:
        return np.full_like(w, 1.0 / len(w))
    return w / w.sum()


def allocate_paper(
    importance: np.ndarray, depth: np.ndarray, sparsity: float, p_min: float, p_max: float
) -> np.ndarray:
    """Eq. 6: iterative redistribution of the budget Delta_0 = rho L; -> p [L].

    Starts from p = 0 with every layer active; each round adds Delta I D / sum(I D) to the
    active layers, clips to [p_min, p_max], subtracts what was assigned, and drops the
    layers that reached a bound. If no layer is left inside the bounds while budget
    remains, the layers that can still move in the needed direction take it (so the total
    is rho L whenever L p_min <= rho L <= L p_max).
    """
    imp = np.asarray(importance, dtype=np.float64)
    dep = np.asarray(depth, dtype=np.float64)
    num_layers = imp.size
    p = np.zeros(num_layers, dtype=np.float64)
    budget = sparsity * num_layers
    active = np.arange(num_layers)
    for _ in range(ALLOCATION_MAX_ITERATIONS):
        if abs(budget) <= ALLOCATION_TOLERANCE or active.size == 0:
            break
        before = p[active].copy()
        p[active] = np.clip(before + budget * _weights(imp, dep, active), p_min, p_max)
        budget -= float((p[active] - before).sum())
        inside = (p > p_min) & (p < p_max)
        active = np.nonzero(inside)[0]
        if active.size == 0 and abs(budget) > ALLOCATION_TOLERANCE:
            movable = p < p_max if budget > 0 else p > p_min
            active = np.nonzero(movable)[0]
    return p


def kept_neurons(pruning: np.ndarray, width: int) -> list[int]:
    """k_l = round((1 - p_l) m) per layer (the workload model's rounding rule)."""
    return [kept_count(1.0 - float(p), width) for p in np.asarray(pruning)]
