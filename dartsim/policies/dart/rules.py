"""DART's math as pure functions of tensors: scores, sensitivity, budgets, masks.

Equation numbers are the DART paper's. Statistics run in float64 so that results do not
depend on the model's dtype or on summation order more than necessary.
"""

from __future__ import annotations

import torch

from dartsim.policies.dart import allocation


def neuron_scores(u: torch.Tensor) -> torch.Tensor:
    """s_i = sum_t u_{t,i}^2 over the tokens of u: [..., tokens, m] -> [m] (section 3.1).
    The recorder adds each forward's scores to a collection's running sum."""
    flat = u.reshape(-1, u.shape[-1]).to(torch.float64)
    return flat.pow(2).sum(dim=0)


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


def published_terms(y: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, the two terms of the published code's sensitivity from the bare FFN
    output F (no residual): cos(y_t, F_t) and ||F_t - y_t|| / ||y_t||; [n, d] x2 -> [n], [n]
    (torch's cosine_similarity, as the authors' code uses)."""
    y64, f64 = y.double(), f.double()
    cos = torch.nn.functional.cosine_similarity(y64, f64, dim=-1)
    ratio = (f64 - y64).norm(dim=-1) / y64.norm(dim=-1)
    return cos, ratio


def sensitivity_published(mean_cos: torch.Tensor, mean_ratio: torch.Tensor) -> torch.Tensor:
    """The published code's window sensitivity from the window means of the two terms:
    (1 - mean_t cos(y_t, F_t)) * mean_t(||F_t - y_t|| / ||y_t||)."""
    return (1.0 - mean_cos) * mean_ratio


def importance_paper(s_bar: torch.Tensor) -> torch.Tensor:
    """I = 1 - S_bar / sum_j S_bar_j: [L] -> [L] (allocation.py, on a tensor)."""
    return torch.from_numpy(allocation.importance_paper(s_bar.double().cpu().numpy()))


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
    """Eq. 5 as a tensor (allocation.py)."""
    return torch.from_numpy(allocation.depth_factor(num_layers, alpha_e, alpha_l, beta_e, beta_l))


def allocate_paper(
    importance: torch.Tensor, depth: torch.Tensor, sparsity: float, p_min: float, p_max: float
) -> torch.Tensor:
    """Eq. 6 as a tensor (allocation.py)."""
    p = allocation.allocate_paper(
        importance.double().cpu().numpy(), depth.double().cpu().numpy(), sparsity, p_min, p_max
    )
    return torch.from_numpy(p)


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
    return allocation.kept_neurons(pruning.double().cpu().numpy(), width)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean [m] mask of the k highest scores; ties go to the lower index."""
    order = torch.sort(-scores.double(), stable=True).indices
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask
