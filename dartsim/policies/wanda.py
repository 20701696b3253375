"""Wanda: one-shot unstructured weight pruning by weight magnitude times input norm.

Follows Wanda (Sun, Liu, Bair and Kolter, "A Simple and Effective Pruning Approach for
Large Language Models", ICLR 2024, Eq. 1 and section 3): the score of weight W_ij of a
linear layer y = W x is |W_ij| * ||X_j||_2, the l2 norm of input feature j over the
calibration tokens, and weights are compared within each output row: every row drops
the same fraction, its lowest scores. No weight is updated afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import top_k_rows

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """weight [out, in], input_norm [in] -> scores [out, in] = |W| * ||X_j||."""
    if input_norm.shape != (weight.shape[1],):
        raise ValueError(f"input norm has shape {tuple(input_norm.shape)}, weight {tuple(weight.shape)}")
    return weight.double().abs() * input_norm.double()


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool [out, in] of the weights kept: each row keeps its in - round(sparsity * in)
    highest scores."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"weight sparsity must lie in [0, 1), got {sparsity}")
    width = scores.shape[-1]
    pruned = int(sparsity * width + 0.5)
    return top_k_rows(scores, width - pruned)


def prune_by_wanda(runner: HookedRecorder, keep: Any) -> None:
    """Zero every decoder weight `keep(scores)` drops, scores by Wanda's rule on the
    calibration input norms (shared by wanda and 2:4)."""
    stats = runner.stats
    runner.prune_weights(lambda w, kind, i: keep(wanda_scores(w, stats.input_sq[kind][i].sqrt())))


class Wanda(HookedPolicy):
    name = "wanda"
    summary = "Wanda: unstructured weight pruning by |W| x input-activation norm on calibration text"
    prunes = "weights"
    per_input = False
    order = 4
    options: ClassVar[frozenset[str]] = frozenset({"sparsity", "weight_format"})
    needs_calibration = True

    def params(self, settings: PolicySettings) -> dict[str, Any]:
        return {**super().params(settings), "weight_format": settings.weight_format}

    def weight_format(self, settings: PolicySettings) -> str:
        return settings.weight_format

    def prepare(self, runner: HookedRecorder, settings: PolicySettings) -> None:
        prune_by_wanda(runner, lambda scores: unstructured_mask(scores, settings.sparsity))


register(Wanda())
