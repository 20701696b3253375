"""Semi-structured N:M weight pruning (2:4 by default), ranked by the Wanda score.

Follows NVIDIA's 2:4 structured sparsity (Mishra et al., "Accelerating Sparse Deep Neural
Networks", 2021): in every group of four consecutive weights along the input dimension
two are zero, which Ampere and later tensor cores skip. The weights kept in each group
are the two with the highest Wanda score (Wanda's N:M variant, section 3 of its paper).
"""

from __future__ import annotations

import torch

from dartsim.policies.masks import top_k_rows

N_KEPT = 2
M_GROUP = 4


def n_m_mask(scores: torch.Tensor, n: int = N_KEPT, m: int = M_GROUP) -> torch.Tensor:
    """Bool [out, in]: in each group of `m` consecutive inputs of a row, the `n` highest."""
    rows, width = scores.shape
    if width % m:
        raise ValueError(f"{m}-element groups need an input width divisible by {m}, got {width}")
    groups = scores.reshape(rows, width // m, m)
    return top_k_rows(groups, n).reshape(rows, width)
