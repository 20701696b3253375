"""Wanda: one-shot unstructured weight pruning by weight magnitude times input norm.

Follows Wanda (Sun, Liu, Bair and Kolter, "A Simple and Effective Pruning Approach for
Large Language Models", ICLR 2024, Eq. 1 and section 3): the score of weight W_ij of a
linear layer y = W x is |W_ij| * ||X_j||_2, the l2 norm of input feature j over the
calibration tokens, and weights are compared within each output row: every row drops
the same fraction, its lowest scores. No weight is updated afterwards.
"""

from __future__ import annotations

import torch

from dartsim.policies.masks import top_k_rows


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
