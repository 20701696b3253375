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


PUBLISHED_EPSILON = 1e-6
"""compute_adaptive_topk's epsilon (seeder-research/DART src/neuronDefuser.py:486): in the
min-max denominator, the convergence test and the eligibility bounds."""


def importance_published(s_bar: torch.Tensor) -> torch.Tensor:
    """The published code's min-max form R = 1 - (S - min) / (max - min + eps): [L] -> [L]
    (neuronDefuser.py:555-559; the most sensitive layer gets R of about 0)."""
    s = s_bar.double()
    return 1.0 - (s - s.min()) / (s.max() - s.min() + PUBLISHED_EPSILON)


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
    """The published code's allocation (compute_adaptive_topk, neuronDefuser.py:583-641):
    with weights P = R D, a proportional start rho L P / sum(P), clipped; then at most
    `rounds` rounds that hand the leftover to every layer that can still move (a positive
    one to all layers below p_max - eps, layers at p_min included; a negative one to all
    above p_min + eps), in proportion to P, clipping again; if the eligible layers' P sums
    to eps or less, the leftover is split evenly among them."""
    weights = importance.double() * depth.double()
    num_layers = weights.numel()
    budget = sparsity * num_layers
    total = float(weights.sum())
    start = weights / total if total > 0 else torch.full_like(weights, 1.0 / num_layers)
    p = (budget * start).clamp(p_min, p_max)
    for _ in range(rounds):
        leftover = budget - float(p.sum())
        if abs(leftover) < PUBLISHED_EPSILON:
            break
        eligible = p < p_max - PUBLISHED_EPSILON if leftover > 0 else p > p_min + PUBLISHED_EPSILON
        if not bool(eligible.any()):
            break
        share = weights * eligible
        if float(share.sum()) > PUBLISHED_EPSILON:
            p = (p + leftover * share / share.sum()).clamp(p_min, p_max)
        else:
            p = p.clone()
            p[eligible] += leftover / int(eligible.sum())
            p = p.clamp(p_min, p_max)
    return p


def kept_neurons_published(pruning: torch.Tensor, width: int) -> list[int]:
    """int(round((1 - p) m)) per layer, halves to even as numpy rounds
    (neuronDefuser.py:692)."""
    return [round((1.0 - float(p)) * width) for p in pruning]


def published_sensitivity_order(num_layers: int, epoch: int, reproduce_defects: bool) -> list[int]:
    """The layer whose sensitivity sits at each position of compute_adaptive_topk's arrays.

    The code iterates its history dict in insertion order and treats position i as layer i.
    After a re-trigger the last layer's entry is inserted first (the reset happens inside
    its attention hook, before its FFN), so the order becomes [L-1, 0, ..., L-2]: layer i's
    budget then uses layer i-1's sensitivity. The first mask is in order."""
    if epoch == 0 or not reproduce_defects or num_layers == 1:
        return list(range(num_layers))
    return [num_layers - 1, *range(num_layers - 1)]


def published_kept_counts(
    s_bar: torch.Tensor,
    depth: torch.Tensor,
    sparsity: float,
    p_min: float,
    p_max: float,
    rounds: int,
    width: int,
    epoch: int,
    reproduce_defects: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(importance, pruning, kept counts) per layer as the published code computes them for
    mask epoch `epoch`, its two defects reproduced or corrected:

    - the sensitivity order after a re-trigger (see published_sensitivity_order);
    - `layer_name` shadowed by the loop variable in compute_adaptive_topk
      (neuronDefuser.py:526, returned at 698): layer 0 receives the count of the layer whose
      sensitivity sits last (the last layer for the first mask, layer L-2 afterwards).
    """
    order = published_sensitivity_order(s_bar.numel(), epoch, reproduce_defects)
    importance = importance_published(s_bar.double()[order])
    pruning = allocate_published(importance, depth, sparsity, p_min, p_max, rounds)
    counts = kept_neurons_published(pruning, width)
    if reproduce_defects:
        counts[0] = counts[order[-1]]
    return importance, pruning, counts


RANKINGS = ("sum-of-squares", "magnitude", "max", "mean", "combined", "product")
"""Neuron scores: the paper's sum of u^2 over the window, and the published code's
ranking methods (neuronDefuser.py:138-167)."""


def rank_scores(
    sum_of_squares: torch.Tensor,
    proxy_max: torch.Tensor | None,
    proxy_mean: torch.Tensor | None,
    ranking: str,
) -> torch.Tensor:
    """Scores to rank neurons by, from A = sum_t u^2 [.., m] and the published code's
    vocabulary proxies Pmax, Pmean (max and mean over the vocabulary of |W_down^T E^T|):
    magnitude sqrt(A), max Pmax sqrt(A), mean Pmean sqrt(A), combined sqrt(A) (Pmax +
    Pmean), product A Pmax Pmean; sum-of-squares is the paper's A."""
    a = sum_of_squares.double()
    if ranking == "sum-of-squares":
        return a
    norm = a.sqrt()
    if ranking == "magnitude":
        return norm
    if proxy_max is None or proxy_mean is None:
        raise ValueError(f"ranking {ranking!r} needs the vocabulary proxies")
    if ranking == "max":
        return proxy_max * norm
    if ranking == "mean":
        return proxy_mean * norm
    if ranking == "combined":
        return norm * (proxy_max + proxy_mean)
    if ranking == "product":
        return a * proxy_max * proxy_mean
    raise ValueError(f"unknown ranking {ranking!r}; valid: {', '.join(RANKINGS)}")


def kept_neurons(pruning: torch.Tensor, width: int) -> list[int]:
    """k_l = round((1 - p_l) m) per layer (the workload model's rounding rule)."""
    return [kept_count(1.0 - float(p), width) for p in pruning]


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean [m] mask of the k highest scores; ties go to the lower index."""
    order = torch.sort(-scores.double(), stable=True).indices
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask
