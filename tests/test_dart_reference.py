"""The recorder's masks against dart/reference.py, and the allocation rules of both
variants against cases worked by hand from the paper and from the authors' code
(compute_adaptive_topk, neuronDefuser.py:484-701)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dartsim.policies.dart import reference
from dartsim.policies.dart import rules as policy
from dartsim.policies.dart.controller import DartController
from dartsim.policies.dart.params import PUBLISHED_ROUNDS, DartParams, DartSettings
from dartsim.policies.dart.recorder import DartRecorder
from dartsim.record.builder import TraceBuilder
from dartsim.record.loop import GenerationOptions, generate
from dartsim.record.model import LoadedModel
from dartsim.record.session import encode_prompt, eos_ids

WIDTH = 1536  # SmolLM2-135M's FFN width, as in the worked cases
FLAT = DartParams.published_code(sparsity=0.5, p_min=0.1, p_max=0.6)


def _published(weights: list[float], params: DartParams) -> list[float]:
    """policy.allocate_published with the weights P = R D given directly (R = P, D = 1)."""
    p = policy.allocate_published(
        torch.tensor(weights, dtype=torch.float64), torch.ones(len(weights), dtype=torch.float64),
        params.sparsity, params.p_min, params.p_max, PUBLISHED_ROUNDS,
    )  # fmt: skip
    return p.tolist()


# Case A: P = [0.1, 1, 1], rho 0.5, bounds [0.1, 0.6]. Start 1.5 P / 2.1 = [0.071, 0.714,
# 0.714] -> clip [0.1, 0.6, 0.6], sum 1.3; leftover +0.2 goes to every layer below p_max,
# layer 0 at p_min included: [0.3, 0.6, 0.6].
# Case C: same weights, bounds [0.1, 0.9]: start clips to [0.1, 0.714, 0.714], sum 1.529;
# leftover -0.029 comes from the layers above p_min in proportion 1:1: [0.1, 0.7, 0.7].
@pytest.mark.parametrize(
    ("p_max", "expected", "kept"),
    [(0.6, [0.3, 0.6, 0.6], [1075, 614, 614]), (0.9, [0.1, 0.7, 0.7], [1382, 461, 461])],
)
def test_published_allocation_worked_cases(p_max: float, expected: list[float], kept: list[int]) -> None:
    params = DartParams.published_code(sparsity=0.5, p_min=0.1, p_max=p_max)
    got = _published([0.1, 1.0, 1.0], params)
    assert got == pytest.approx(expected, abs=1e-12)
    assert policy.kept_neurons_published(torch.tensor(got), WIDTH) == kept
    # The plain path takes sensitivities: equal ones give R = 1 everywhere (S_hat = 0 /
    # eps), so the pressure is the depth factor, here set to the case's weights.
    plain = reference.allocation_published([0.2, 0.2, 0.2], [0.1, 1.0, 1.0], params)
    assert plain == pytest.approx(expected, abs=1e-12)


def test_the_even_split_fallback_gives_the_leftover_to_the_most_sensitive_layer() -> None:
    # Case E: S = [0.9, 0.1, 0.1] -> R = [1.25e-6, 1, 1]; D = [0.25, 1, 0.35]; P = [3.1e-7,
    # 1, 0.35]. Start 1.5 P / 1.35 clips to [0.1, 0.6, 0.389]; round 1 hands +0.411 to layers
    # 0 and 2 by pressure -> [0.1, 0.6, 0.6]; round 2: only layer 0 is below p_max and its
    # pressure is under eps, so it takes the whole +0.2 evenly: [0.3, 0.6, 0.6].
    s = torch.tensor([0.9, 0.1, 0.1], dtype=torch.float64)
    depth = policy.depth_factor(3, 0.25, 0.35, 0.3, 0.15)
    assert depth.tolist() == pytest.approx([0.25, 1.0, 0.35])
    importance = policy.importance_published(s)
    assert importance[0].item() == pytest.approx(1e-6 / (0.8 + 1e-6), rel=1e-9)
    got = policy.allocate_published(importance, depth, 0.5, 0.1, 0.6, PUBLISHED_ROUNDS).tolist()
    assert got == pytest.approx([0.3, 0.6, 0.6], abs=1e-6)
    assert reference.allocation_published(s.tolist(), depth.tolist(), FLAT) == pytest.approx(got, abs=1e-12)


def test_first_mask_defect_gives_layer_0_the_last_layers_count() -> None:
    s = torch.tensor([0.05, 0.9, 0.3, 0.1], dtype=torch.float64)
    depth = policy.depth_factor(4, 0.25, 0.35, 0.3, 0.15)
    _, pruning, counts = policy.published_kept_counts(s, depth, 0.5, 0.1, 0.9, 10, WIDTH, 0, True)
    intended = policy.kept_neurons_published(pruning, WIDTH)
    assert intended[0] != intended[3], "the case must tell the two counts apart"
    assert counts[0] == intended[3] and counts[1:] == intended[1:]
    _, _, fixed = policy.published_kept_counts(s, depth, 0.5, 0.1, 0.9, 10, WIDTH, 0, False)
    assert fixed == intended


def test_after_a_retrigger_the_sensitivities_rotate_by_one_layer() -> None:
    # Case D: positions hold the sensitivities of layers [2, 0, 1]; layer 0's count is then
    # the count at position L-2 = 1 (the last history key is layer_1).
    s = torch.tensor([0.05, 0.9, 0.3], dtype=torch.float64)
    depth = policy.depth_factor(3, 0.25, 0.35, 0.3, 0.15)
    importance, pruning, counts = policy.published_kept_counts(s, depth, 0.5, 0.1, 0.9, 10, WIDTH, 1, True)
    assert torch.equal(importance, policy.importance_published(s[[2, 0, 1]]))
    intended = policy.kept_neurons_published(pruning, WIDTH)
    assert counts == [intended[1], intended[1], intended[2]]
    # corrected: no rotation, no shadowing
    _, fixed_pruning, fixed = policy.published_kept_counts(s, depth, 0.5, 0.1, 0.9, 10, WIDTH, 1, False)
    assert fixed == policy.kept_neurons_published(fixed_pruning, WIDTH)
    assert torch.equal(policy.importance_published(s), policy.published_kept_counts(
        s, depth, 0.5, 0.1, 0.9, 10, WIDTH, 1, False)[0])  # fmt: skip


def test_paper_allocation_case_a_in_both_paths() -> None:
    # Eq. 6 on case A: round 1 clips [0.071, 0.714, 0.714] to [0.1, 0.6, 0.6] with 0.2 left
    # and no layer strictly inside the bounds; dartsim's documented fallback lets the layers
    # that can still move (layer 0) take it: [0.3, 0.6, 0.6].
    params = DartParams(sparsity=0.5, p_min=0.1, p_max=0.6)
    got = policy.allocate_paper(torch.tensor([0.1, 1.0, 1.0]), torch.ones(3), 0.5, 0.1, 0.6).tolist()
    assert got == pytest.approx([0.3, 0.6, 0.6])
    # plain path: equal sensitivities give equal importance, so the depth carries the weights
    plain = reference.allocation_paper([1.0, 1.0, 1.0], [0.1, 1.0, 1.0], params)
    assert plain == pytest.approx([0.3, 0.6, 0.6])


def _record_with_capture(loaded: LoadedModel, params: DartParams, tokens: int) -> tuple[DartRecorder, Any]:
    options = GenerationOptions(max_new_tokens=tokens, min_new_tokens=tokens)
    builder = TraceBuilder()
    controller = DartController(loaded, DartSettings(params), builder, capture=True)
    prompt = "Explain how a bicycle works, then describe the history of jazz."
    try:
        generate(
            loaded, controller, encode_prompt(loaded, prompt, True), builder, options, eos_ids(loaded), {}
        )
    finally:
        controller.close()
    return controller.rec, builder


def _assert_masks_equal_the_plain_path(rec: DartRecorder, params: DartParams) -> None:
    assert rec.captures, "the run must build a mask"
    pmax = rec.proxy_max.tolist() if rec.proxy_max is not None else None
    pmean = rec.proxy_mean.tolist() if rec.proxy_mean is not None else None
    for capture in rec.captures:
        activations = [{k: [row.tolist() for row in rows] for k, rows in layer.items()}
                       for layer in capture["activations"]]  # fmt: skip
        plain = reference.kept_indices(activations, params, capture["epoch"], pmax, pmean)
        for layer, kept in enumerate(plain):
            assert torch.nonzero(capture["masks"][layer]).flatten().tolist() == kept, (
                capture["epoch"],
                layer,
            )


@pytest.mark.slow
def test_paper_masks_equal_the_plain_recomputation(smollm2: LoadedModel) -> None:
    params = DartParams(sparsity=0.5, tau=5, reference_tokens=10, c0=1)
    rec, builder = _record_with_capture(smollm2, params, 45)
    assert len(builder.retriggers) >= 1, "the run should re-trigger, to check a window-joined collection"
    _assert_masks_equal_the_plain_path(rec, params)


@pytest.mark.slow
def test_published_code_masks_equal_the_plain_recomputation(smollm2: LoadedModel) -> None:
    params = DartParams.preset("published-code", masking_step=10)
    rec, _ = _record_with_capture(smollm2, params, 60)
    assert len(rec.captures) >= 2, "the run should re-trigger, to check the rotated allocation"
    _assert_masks_equal_the_plain_path(rec, params)
