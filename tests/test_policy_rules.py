"""Each policy's rules on a hand-worked example (the numbers are worked out in comments)."""

from __future__ import annotations

import math

import pytest
import torch

from dartsim.errors import UserError
from dartsim.policies import (
    dejavu,
    dsgp,
    get_policy,
    kgds,
    policies,
    policies_help,
    semistructured,
    static,
    wanda,
)
from dartsim.policies._topk import top_k_rows


def test_top_k_rows_keeps_the_highest_and_breaks_ties_to_the_lower_index() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert top_k_rows(scores, 2).tolist() == [[False, True, True, False], [True, True, False, False]]


def test_griffin_scores_normalise_each_token_before_the_column_norm() -> None:
    # token 1: u = [3, 4] -> [0.6, 0.8]; token 2: u = [0, 10] -> [0, 1]
    # neuron 0: sqrt(0.36) = 0.6; neuron 1: sqrt(0.64 + 1) = 1.2806
    u = torch.tensor([[3.0, 4.0], [0.0, 10.0]])
    assert static.griffin_scores(u).tolist() == pytest.approx([0.6, math.sqrt(1.64)])


def test_static_masks_keep_the_same_count_in_every_layer() -> None:
    u0 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # scores [1, 1, 0, 0]
    u1 = torch.tensor([[0.0, 0.0, 2.0, 1.0]])  # scores [0, 0, 0.894, 0.447]
    masks = static.static_masks([u0, u1], keep_fraction=0.5)
    assert masks.tolist() == [[True, True, False, False], [False, False, True, True]]


def test_dejavu_predictor_recovers_an_exact_rank_one_relation() -> None:
    # |u| = x @ [1, 2]^T @ [1, 0, 3]: rank one, so a rank-1 fit predicts it (ridge aside).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    target = (
        x
        @ torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        @ torch.tensor([[1.0, 0.0, 3.0]], dtype=torch.float64)
    )
    a, b = dejavu.fit_predictor(x, target, rank=1)
    assert a.shape == (2, 1) and b.shape == (1, 3)
    assert torch.allclose(dejavu.predicted_scores(x, a, b), target, rtol=1e-2, atol=1e-2)


def test_dejavu_token_masks_differ_per_token() -> None:
    scores = torch.tensor([[5.0, 1.0, 3.0, 0.0], [0.0, 2.0, 1.0, 9.0]])
    assert dejavu.token_masks(scores, 0.5).tolist() == [
        [True, False, True, False],
        [False, True, False, True],
    ]


def test_wanda_compares_weights_within_each_output_row() -> None:
    # scores = |W| * ||X_j||: row 0 = [1*1, 2*10, 3*1, 4*1] = [1, 20, 3, 4]
    #                         row 1 = [8*1, 1*10, 1*1, 1*1] = [8, 10, 1, 1]
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0], [8.0, 1.0, -1.0, 1.0]])
    norms = torch.tensor([1.0, 10.0, 1.0, 1.0])
    scores = wanda.wanda_scores(w, norms)
    assert scores.tolist() == [[1, 20, 3, 4], [8, 10, 1, 1]]
    # 50%: each row keeps its two best (a magnitude-only rule would keep 3 and 4 in row 0)
    kept = wanda.unstructured_mask(scores, 0.5).tolist()
    assert kept == [[False, True, False, True], [True, True, False, False]]


def test_two_four_keeps_two_in_every_group_of_four() -> None:
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0, 9.0, 8.0, 7.0]])
    mask = semistructured.n_m_mask(scores)
    assert mask.tolist() == [[True, False, True, False, False, True, True, False]]
    assert int(mask.sum()) == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        semistructured.n_m_mask(torch.ones(1, 6))


def test_dsgp_head_sensitivity_is_each_heads_share_of_the_output() -> None:
    # two heads of width 1, W_o = I (d = 2): outputs [3, 4] -> shares 3/5 and 4/5
    o = torch.tensor([[3.0, 4.0]])
    sens = dsgp.head_sensitivity(o, torch.eye(2), heads=2)
    assert sens.tolist() == pytest.approx([0.6, 0.8])
    assert dsgp.keep_top(sens.unsqueeze(0), 0.5).tolist() == [[False, True]]


def test_dsgp_neuron_sensitivity_weighs_activation_by_the_output_column() -> None:
    # mean |u| = [1, 2]; ||W_down[:, j]|| = [5, 1] -> [5, 2]
    u = torch.tensor([[1.0, -1.0], [-1.0, 3.0]])
    w_down = torch.tensor([[3.0, 1.0], [4.0, 0.0]])
    assert dsgp.neuron_sensitivity(u, w_down).tolist() == pytest.approx([5.0, 2.0])


def test_kgds_core_is_in_every_category_mask() -> None:
    # one layer, m = 4, keep 0.5 -> k = 2; core_fraction 0.5 -> 1 core neuron (neuron 3)
    core_sal = torch.tensor([[0.0, 1.0, 2.0, 9.0]])
    cat_sal = torch.tensor([[[5.0, 0.0, 1.0, 9.0]], [[0.0, 1.0, 7.0, 9.0]]])
    core, masks = kgds.core_and_category_masks(core_sal, cat_sal, 0.5, 0.5)
    assert core.tolist() == [[False, False, False, True]]
    assert masks.tolist() == [[[True, False, False, True]], [[False, False, True, True]]]


def test_kgds_saliency_and_classifier() -> None:
    u = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    g = torch.tensor([[2.0, 1.0], [-1.0, 4.0]])
    # |1*2| + |3*-1| = 5; |-2*1| + |0.5*4| = 4
    assert kgds.saliency(u, g).tolist() == [5.0, 4.0]
    cents = kgds.centroids([torch.tensor([[1.0, 0.0], [1.0, 0.2]]), torch.tensor([[0.0, 1.0]])])
    assert kgds.classify(torch.tensor([0.9, 0.1]), cents) == 0
    assert kgds.classify(torch.tensor([0.1, 0.9]), cents) == 1


def test_registry_lists_every_policy_and_names_the_valid_ones_on_a_miss() -> None:
    from dartsim.trace.validate import POLICY_NAME

    assert list(policies()) == ["dense", "static", "dart", "dejavu", "wanda", "2:4", "dsgp", "kgds"]
    assert all(POLICY_NAME.fullmatch(name) for name in policies())  # every name a trace can hold
    assert all(name in policies_help() for name in policies())
    with pytest.raises(UserError, match="choose one of dense, static"):
        get_policy("griffin")
