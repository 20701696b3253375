"""DART's pure math on hand-computed cases: Eq. 4-7, top-k, and the allocation's guarantees."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from dartsim.errors import UserError
from dartsim.policies.dart import drift
from dartsim.policies.dart import rules as policy
from dartsim.policies.dart.params import DartParams


def test_neuron_scores_sum_squares_over_tokens() -> None:
    u = torch.tensor([[[1.0, -2.0, 0.0], [3.0, 1.0, -1.0]]])  # [1, 2 tokens, 3 neurons]
    assert policy.neuron_scores(u).tolist() == [10.0, 5.0, 1.0]


def test_sensitivity_eq4_by_hand() -> None:
    y = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [4.0, 0.0]])
    # token 0: cos = 0, ||z - y|| / ||y|| = sqrt(2) -> S = sqrt(2)
    # token 1: same direction, cos = 1 -> S = 0
    got = policy.sensitivity_per_token(y, z)
    assert got[0].item() == pytest.approx(math.sqrt(2))
    assert got[1].item() == pytest.approx(0.0)


def test_published_sensitivity_uses_means_of_cos_and_ratio() -> None:
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    f = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # cos: 0 and 1 -> mean 0.5; ratios: sqrt(2) and 0 -> mean sqrt(2)/2
    cos, ratio = policy.published_terms(y, f)
    assert cos.tolist() == pytest.approx([0.0, 1.0]) and ratio.tolist() == pytest.approx([math.sqrt(2), 0.0])
    got = policy.sensitivity_published(cos.mean(), ratio.mean())
    assert got.item() == pytest.approx(0.5 * math.sqrt(2) / 2)


def test_importance_forms() -> None:
    s = torch.tensor([1.0, 3.0, 4.0])
    assert policy.importance_paper(s).tolist() == pytest.approx([0.875, 0.625, 0.5])
    # min-max with the authors' eps in the denominator: 1 - (s - 1) / (3 + 1e-6)
    span = 3 + 1e-6
    assert policy.importance_published(s).tolist() == pytest.approx(
        [1.0, 1 - 2 / span, 1 - 3 / span], abs=1e-15
    )


def test_depth_factor_eq5_endpoints_and_plateau() -> None:
    d = policy.depth_factor(11, 0.25, 0.35, 0.3, 0.15)
    assert d[0].item() == pytest.approx(0.25)  # first layer: alpha_e
    assert d[-1].item() == pytest.approx(0.35)  # last layer: alpha_l
    # z = 0.1: 0.25 + 0.75 * 0.1 / 0.3 = 0.5
    assert d[1].item() == pytest.approx(0.5)
    # z = 0.9: 0.35 + 0.65 * 0.1 / 0.15 = 0.7833
    assert d[9].item() == pytest.approx(0.35 + 0.65 * 0.1 / 0.15)
    assert d[5].item() == 1.0  # middle layers are not protected


def test_paper_allocation_hand_case_without_clipping() -> None:
    importance = torch.tensor([0.5, 0.5, 1.0, 1.0])
    depth = torch.ones(4)
    p = policy.allocate_paper(importance, depth, 0.3, 0.0, 0.9)
    # Delta_0 = 1.2 split in proportion 1:1:2:2
    assert p.tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4])


def test_paper_allocation_redistributes_what_the_bounds_cut() -> None:
    importance = torch.tensor([0.1, 1.0, 1.0])
    depth = torch.ones(3)
    p = policy.allocate_paper(importance, depth, 0.5, 0.1, 0.6)
    # First round: 1.5 * [1/21, 10/21, 10/21] = [0.0714, 0.714, 0.714] -> clip [0.1, 0.6, 0.6]
    # All three hit a bound with Delta = 1.5 - 1.3 = 0.2 left; the fallback gives it to the
    # layer that can still move up (layer 0): 0.3.
    assert p.tolist() == pytest.approx([0.3, 0.6, 0.6])
    assert p.sum().item() == pytest.approx(1.5)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("rho", [0.2, 0.5, 0.7, 0.85])
def test_allocation_meets_the_budget_and_the_bounds(seed: int, rho: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    layers = 32
    s_bar = torch.rand(layers, generator=gen, dtype=torch.float64) + 0.01
    importance = policy.importance_paper(s_bar)
    depth = policy.depth_factor(layers, 0.25, 0.35, 0.3, 0.15)
    p = policy.allocate_paper(importance, depth, rho, 0.1, 0.9)
    assert p.sum().item() == pytest.approx(rho * layers, abs=1e-6)
    assert float(p.min()) >= 0.1 - 1e-12 and float(p.max()) <= 0.9 + 1e-12


def test_less_important_layers_are_pruned_more() -> None:
    layers = 12
    s_bar = torch.linspace(1.0, 0.1, layers, dtype=torch.float64)  # layer 0 most sensitive
    importance = policy.importance_paper(s_bar)
    flat_depth = torch.ones(layers, dtype=torch.float64)
    p = policy.allocate_paper(importance, flat_depth, 0.5, 0.0, 0.95)
    assert all(float(a) < float(b) for a, b in itertools.pairwise(p))


def test_top_k_keeps_the_highest_scores_and_breaks_ties_by_index() -> None:
    scores = torch.tensor([0.5, 2.0, 2.0, 0.1, 3.0])
    assert policy.top_k_mask(scores, 3).tolist() == [False, True, True, False, True]
    assert policy.top_k_mask(torch.ones(4), 2).tolist() == [True, True, False, False]
    assert policy.top_k_mask(scores, 0).sum() == 0


def test_kept_neurons_round_the_kept_fraction() -> None:
    assert policy.kept_neurons(torch.tensor([0.7, 0.0, 0.5]), 10) == [3, 10, 5]


def _reference() -> drift.Reference:
    # Two windows of two tokens: directions (1,0),(1,0) and (1,0),(0,1).
    att = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    return drift.build_reference(att, tau=2)


def test_reference_statistics_by_hand() -> None:
    ref = _reference()
    # mean = (0.75, 0.25); window 0 mean (1, 0): cos = 0.75 / |(0.75, 0.25)| = 0.94868
    # window 1 mean (0.5, 0.5): cos = 0.5 / (0.7071 * 0.7906) = 0.89443
    a0, a1 = 0.75 / math.hypot(0.75, 0.25), 0.5 / (math.hypot(0.5, 0.5) * math.hypot(0.75, 0.25))
    assert ref.window_similarities == pytest.approx((a0, a1))
    assert ref.mu == pytest.approx((a0 + a1) / 2)
    assert ref.sigma == pytest.approx(abs(a0 - a1) / 2)  # population form, K = 2


def test_detector_fires_exactly_when_eq7_and_the_counter_say() -> None:
    ref = _reference()
    limit = ref.mu - 0.5 * ref.sigma
    aligned = torch.tensor([[0.75, 0.25], [0.75, 0.25]])  # a = 1 > threshold
    drifted = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # a = 0.316 < threshold
    first = drift.check_window(drifted, ref, counter=0, delta=0.5, c0=2, variant="paper")
    assert first.detected and first.counter == 1 and not first.fired
    assert first.threshold == pytest.approx(limit)
    second = drift.check_window(drifted, ref, counter=first.counter, delta=0.5, c0=2, variant="paper")
    assert second.fired and second.counter == 2
    calm = drift.check_window(aligned, ref, counter=1, delta=0.5, c0=2, variant="paper")
    assert not calm.detected and calm.counter == 0 and not calm.fired


def test_counter_rule() -> None:
    assert drift.update_counter(0, False) == 0
    assert drift.update_counter(3, False) == 2
    assert drift.update_counter(3, True) == 4


def test_published_threshold_has_a_floor_of_point_one() -> None:
    ref = drift.Reference(mean=torch.ones(2), mu=0.9, sigma=0.02, window_similarities=(0.9,))
    assert drift.threshold(ref, 0.5, "published-code") == pytest.approx(0.8)
    assert drift.threshold(ref, 0.5, "paper") == pytest.approx(0.89)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": 1.0}, "sparsity must lie in"),
        ({"sparsity": -0.1}, "sparsity must lie in"),
        ({"tau": 60, "reference_tokens": 50}, "tau=60 is larger than the reference length T=50"),
        ({"tau": 7, "reference_tokens": 50}, "must be a multiple of tau=7"),
        ({"p_min": 0.5, "p_max": 0.4}, "need 0 <= p_min <= p_max"),
        ({"beta_e": 0.6, "beta_l": 0.5}, "beta_e + beta_l <= 1"),
        ({"variant": "other"}, "variant must be one of"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        DartParams(**kwargs)  # type: ignore[arg-type]
