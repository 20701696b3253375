"""DART's math as pure functions of tensors: scores, sensitivity, budgets, masks.

Equation numbers are the DART paper's. Statistics run in float64 so that results do not
depend on the model's dtype or on summation order more than necessary.
"""

from __future__ import annotations

import torch

from dartsim.workload.execution import kept_count

ALLOCATION_TOLERANCE = 1e-9
"""|Delta| below which Eq. 6's redistribution stops (a fraction of one layer's budget)."""
ALLOCATION_MAX_ITERATIONS = 1000
"""Eq. 6 converges in at most L iterations (a layer leaves the active set each round or
Delta reaches zero); this bound only guards against float stalls."""


def neuron_scores(u: torch.Tensor) -> torch.Tensor:
    """s_i = sum_t u_{t,i}^2 over the tokens of u: [..., tokens, m] -> [m] (section 3.1)."""
    flat = u.reshape(-1, u.shape[-1]).to(torch.float64)
    return (flat * flat).sum(dim=0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [n, d] tensors, 0 where a norm is 0."""
    dots = (a * b).sum(dim=-1)
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(norms > 0, dots / norms.clamp_min(torch.finfo(a.dtype).tiny), 0.0)


def sensitivity_per_token(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 4: S_t = (1 - cos(y_t, z_t)) * ||z_t - y_t|| / ||y_t||; [n, d] x2 -> [n]."""
    y64, z64 = y.reshape(-1, y.shape[-1]).double(), z.reshape(-1, z.shape[-1]).double()
    ratio = (z64 - y64).norm(dim=-1) / y64.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    return (1.0 - _cosine(y64, z64)) * ratio


def sensitivity_published(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The published code's window sensitivity from the bare FFN output F (no residual):
    (1 - mean_t cos(y_t, F_t)) * mean_t(||F_t - y_t|| / ||y_t||); [n, d] x2 -> scalar."""
    y64, f64 = y.reshape(-1, y.shape[-1]).double(), f.reshape(-1, f.shape[-1]).double()
    ratio = (f64 - y64).norm(dim=-1) / y64.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    return (1.0 - _cosine(y64, f64).mean()) * ratio.mean()


def importance_paper(s_bar: torch.Tensor) -> torch.Tensor:
    """I = 1 - S_bar / sum_j S_bar_j: [L] -> [L]."""
    s = s_bar.double()
    total = s.sum()
    if total <= 0:
        return torch.ones_like(s)
    return 1.0 - s / total


def importance_published(s_bar: torch.Tensor) -> torch.Tensor:
    """The published code's min-max form R = 1 - (S - min) / (max - min): [L] -> [L]."""
    s = s_bar.double()
    spread = s.max() - s.min()
    if spread <= 0:
        return torch.ones_like(s)
    return 1.0 - (s - s.min()) / spread


def depth_factor(
    num_layers: int, alpha_e: float, alpha_l: float, beta_e: float, beta_l: float
) -> torch.Tensor:
    """Eq. 5: D = min(1, a_e + (1-a_e) z/b_e, a_l + (1-a_l)(1-z)/b_l), z = l/(L-1): -> [L]."""
    if num_layers == 1:
        z = torch.zeros(1, dtype=torch.float64)
    else:
        z = torch.arange(num_layers, dtype=torch.float64) / (num_layers - 1)
    early = alpha_e + (1 - alpha_e) * z / beta_e
    late = alpha_l + (1 - alpha_l) * (1 - z) / beta_l
    return torch.minimum(torch.minimum(torch.ones_like(z), early), late)


def _weights(importance: torch.Tensor, depth: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    w = importance.double()[idx] * depth.double()[idx]
    if w.sum() <= 0:
        return torch.full_like(w, 1.0 / len(w))
    return w / w.sum()


def allocate_paper(
    importance: torch.Tensor,
    depth: torch.Tensor,
    sparsity: float,
    p_min: float,
    p_max: float,
) -> torch.Tensor:
    """Eq. 6: iterative redistribution of the budget Delta_0 = rho L; -> p [L].

    Starts from p = 0 with every layer active; each round adds Delta I D / sum(I D) to the
    active layers, clips to [p_min, p_max], subtracts what was assigned, and drops the
    layers that reached a bound. If no layer is left inside the bounds while budget
    remains, the layers that can still move in the needed direction take it (so the total
    is rho L whenever L p_min <= rho L <= L p_max).
    """
    num_layers = importance.numel()
    p = torch.zeros(num_layers, dtype=torch.float64)
    budget = sparsity * num_layers
    active = torch.arange(num_layers)
    for _ in range(ALLOCATION_MAX_ITERATIONS):
        if abs(budget) <= ALLOCATION_TOLERANCE or active.numel() == 0:
            break
        before = p[active].clone()
        p[active] = (before + budget * _weights(importance, depth, active)).clamp(p_min, p_max)
        budget -= float((p[active] - before).sum())
        inside = (p > p_min) & (p < p_max)
        active = torch.nonzero(inside).flatten()
        if active.numel() == 0 and abs(budget) > ALLOCATION_TOLERANCE:
            movable = p < p_max if budget > 0 else p > p_min
            active = torch.nonzero(movable).flatten()
    return p


def allocate_published(
    importance: torch.Tensor,
    depth: torch.Tensor,
    sparsity: float,
    p_min: float,
    p_max: float,
    rounds: int,
) -> torch.Tensor:
    """The published code's allocation: a proportional start rho L R D / sum(R D), clipped,
    then at most `rounds` rounds handing the clipped excess to the unclipped layers."""
    num_layers = importance.numel()
    everyone = torch.arange(num_layers)
    target = sparsity * num_layers
    p = (target * _weights(importance, depth, everyone)).clamp(p_min, p_max)
    for _ in range(rounds):
        residual = target - float(p.sum())
        if abs(residual) <= ALLOCATION_TOLERANCE:
            break
        free = torch.nonzero((p > p_min) & (p < p_max)).flatten()
        if free.numel() == 0:
            break
        p[free] = (p[free] + residual * _weights(importance, depth, free)).clamp(p_min, p_max)
    return p


def kept_neurons(pruning: torch.Tensor, width: int) -> list[int]:
    """k_l = round((1 - p_l) m) per layer (the workload model's rounding rule)."""
    return [kept_count(1.0 - float(p), width) for p in pruning]


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean [m] mask of the k highest scores; ties go to the lower index."""
    order = torch.sort(-scores.double(), stable=True).indices
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask
