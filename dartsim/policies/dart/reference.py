"""DART's masks recomputed the plain way, as an independent check on the recorder.

From the activations a collection saw (per layer and token: u as scored, the residual y
entering the FFN and the FFN output F), this module recomputes neuron scores, layer
sensitivities, importance, the depth factor, the allocation, kept counts and the top-k
masks with Python floats, loops and `math.fsum`, written from the paper (Eq. 4-6) and from
the authors' code (neuronDefuser.py compute_adaptive_topk and _compute_combined_score),
without calling dart/policy.py. It is slow on purpose and meant for short recordings.

The published code's vocabulary proxies (max and mean over the vocabulary of |E W_down|)
are a property of the weights, costly to form in plain Python; they are taken as given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dartsim.policies.dart.params import DartParams

Vector = Sequence[float]

EPS = 1e-6  # compute_adaptive_topk's epsilon (neuronDefuser.py:486)
ROUNDS = 10  # its max_iterations
FLOOR_OF_TOLERANCE = 1e-9  # the paper allocation's stopping |Delta|
PAPER_ROUND_CAP = 1000


def _dot(a: Vector, b: Vector) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _norm(a: Vector) -> float:
    return math.sqrt(_dot(a, a))


def _cos(a: Vector, b: Vector) -> float:
    denom = _norm(a) * _norm(b)
    return _dot(a, b) / denom if denom > 0 else 0.0


def neuron_scores(u_rows: Sequence[Vector]) -> list[float]:
    """A_i = sum over tokens of u_i^2."""
    width = len(u_rows[0])
    return [math.fsum(row[i] * row[i] for row in u_rows) for i in range(width)]


def sensitivity_paper(y_rows: Sequence[Vector], f_rows: Sequence[Vector]) -> float:
    """Mean over tokens of Eq. 4 with z = y + F: (1 - cos(y, z)) ||z - y|| / ||y||."""
    values = []
    for y, f in zip(y_rows, f_rows, strict=True):
        z = [a + b for a, b in zip(y, f, strict=True)]
        diff = [b - a for a, b in zip(y, z, strict=True)]
        ny = _norm(y)
        values.append((1.0 - _cos(y, z)) * (_norm(diff) / ny if ny > 0 else 0.0))
    return math.fsum(values) / len(values)


def sensitivity_published(y_rows: Sequence[Vector], f_rows: Sequence[Vector]) -> float:
    """(1 - mean cos(y, F)) * mean(||F - y|| / ||y||) over the tokens."""
    cosines, ratios = [], []
    for y, f in zip(y_rows, f_rows, strict=True):
        cosines.append(_cos(y, f))
        ratios.append(_norm([b - a for a, b in zip(y, f, strict=True)]) / _norm(y))
    return (1.0 - math.fsum(cosines) / len(cosines)) * (math.fsum(ratios) / len(ratios))


def depth_factor(layers: int, p: DartParams) -> list[float]:
    """Eq. 5 for every layer."""
    out = []
    for layer in range(layers):
        z = layer / (layers - 1) if layers > 1 else 0.0
        early = p.alpha_e + (1 - p.alpha_e) * z / p.beta_e
        late = p.alpha_l + (1 - p.alpha_l) * (1 - z) / p.beta_l
        out.append(min(1.0, early, late))
    return out


def allocation_paper(s_bar: Vector, depth: Vector, p: DartParams) -> list[float]:
    """Eq. 6: from p = 0, hand Delta to the layers strictly inside the bounds in proportion
    to I D, clip, repeat; when none is left inside, to those that can still move."""
    total = math.fsum(s_bar)
    importance = [1.0 - s / total for s in s_bar] if total > 0 else [1.0] * len(s_bar)
    layers = len(s_bar)
    pruning = [0.0] * layers
    budget = p.sparsity * layers
    active = list(range(layers))
    for _ in range(PAPER_ROUND_CAP):
        if abs(budget) <= FLOOR_OF_TOLERANCE or not active:
            break
        weights = [importance[j] * depth[j] for j in active]
        weight_sum = math.fsum(weights)
        shares = [w / weight_sum for w in weights] if weight_sum > 0 else [1.0 / len(active)] * len(active)
        assigned = 0.0
        for j, share in zip(active, shares, strict=True):
            before = pruning[j]
            pruning[j] = min(p.p_max, max(p.p_min, before + budget * share))
            assigned += pruning[j] - before
        budget -= assigned
        active = [j for j in range(layers) if p.p_min < pruning[j] < p.p_max]
        if not active and abs(budget) > FLOOR_OF_TOLERANCE:
            if budget > 0:
                active = [j for j in range(layers) if pruning[j] < p.p_max]
            else:
                active = [j for j in range(layers) if pruning[j] > p.p_min]
    return pruning


def allocation_published(sensitivity: Vector, depth: Vector, p: DartParams) -> list[float]:
    """compute_adaptive_topk on sensitivities in its array order: min-max importance R,
    pressure R D, proportional start, clip, then at most ten rounds handing the leftover to
    every layer that can still move (an even split when their pressure sums to eps or less)."""
    s_min, s_max = min(sensitivity), max(sensitivity)
    spread = s_max - s_min + EPS
    pressure = [(1.0 - (s - s_min) / spread) * d for s, d in zip(sensitivity, depth, strict=True)]
    layers = len(sensitivity)
    budget = p.sparsity * layers
    pressure_sum = math.fsum(pressure)
    pruning = [min(p.p_max, max(p.p_min, budget * w / pressure_sum)) for w in pressure]
    for _ in range(ROUNDS):
        leftover = budget - math.fsum(pruning)
        if abs(leftover) < EPS:
            break
        if leftover > 0:
            available = [x < p.p_max - EPS for x in pruning]
        else:
            available = [x > p.p_min + EPS for x in pruning]
        if not any(available):
            break
        open_pressure = [w if ok else 0.0 for w, ok in zip(pressure, available, strict=True)]
        open_sum = math.fsum(open_pressure)
        if open_sum > EPS:
            pruning = [x + leftover * w / open_sum for x, w in zip(pruning, open_pressure, strict=True)]
        else:
            count = sum(available)
            pruning = [x + leftover / count if ok else x for x, ok in zip(pruning, available, strict=True)]
        pruning = [min(p.p_max, max(p.p_min, x)) for x in pruning]
    return pruning


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def top_k(scores: Vector, k: int) -> list[int]:
    """Indices of the k highest scores, ties to the lower index."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def ranked(scores: Vector, ranking: str, proxy_max: Vector | None, proxy_mean: Vector | None) -> list[float]:
    """_compute_combined_score on sum-of-squares scores A (no EMA): sqrt everywhere."""
    if ranking == "sum-of-squares":
        return list(scores)
    norm = [math.sqrt(a) for a in scores]
    if ranking == "magnitude":
        return norm
    assert proxy_max is not None and proxy_mean is not None
    if ranking == "max":
        return [pm * n for pm, n in zip(proxy_max, norm, strict=True)]
    if ranking == "mean":
        return [pm * n for pm, n in zip(proxy_mean, norm, strict=True)]
    if ranking == "combined":
        return [n * (a + b) for n, a, b in zip(norm, proxy_max, proxy_mean, strict=True)]
    if ranking == "product":
        return [a * b * c for a, b, c in zip(scores, proxy_max, proxy_mean, strict=True)]
    raise ValueError(f"unknown ranking {ranking!r}")


def kept_indices(
    activations: Sequence[dict[str, Sequence[Vector]]],
    params: DartParams,
    epoch: int,
    proxy_max: Sequence[Vector] | None = None,
    proxy_mean: Sequence[Vector] | None = None,
) -> list[list[int]]:
    """The kept neurons of every layer for the mask built from `activations` (per layer:
    rows of u, y and F), `epoch` masks having been built before it."""
    layers = len(activations)
    width = len(activations[0]["u"][0])
    depth = depth_factor(layers, params)
    if params.variant == "paper":
        s_bar = [sensitivity_paper(a["y"], a["f"]) for a in activations]
        pruning = allocation_paper(s_bar, depth, params)
        counts = [min(width, _round_half_up((1.0 - x) * width)) for x in pruning]
    else:
        sensitivity = [sensitivity_published(a["y"], a["f"]) for a in activations]
        # After a re-trigger the authors' history dict holds the last layer first.
        rotated = epoch > 0 and params.reproduce_published_defects and layers > 1
        order = [layers - 1, *range(layers - 1)] if rotated else list(range(layers))
        pruning = allocation_published([sensitivity[j] for j in order], depth, params)
        counts = [round((1.0 - x) * width) for x in pruning]  # round half to even, as numpy
        if params.reproduce_published_defects:
            counts[0] = counts[order[-1]]  # the shadowed layer_name: the last history key's count
    masks = []
    for layer in range(layers):
        scores = neuron_scores(activations[layer]["u"])
        pmax = proxy_max[layer] if proxy_max is not None else None
        pmean = proxy_mean[layer] if proxy_mean is not None else None
        masks.append(top_k(ranked(scores, params.ranking, pmax, pmean), counts[layer]))
    return masks
