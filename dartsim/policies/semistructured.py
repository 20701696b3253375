"""Semi-structured N:M weight pruning (2:4 by default), ranked by the Wanda score.

Follows NVIDIA's 2:4 structured sparsity (Mishra et al., "Accelerating Sparse Deep Neural
Networks", 2021): in every group of four consecutive weights along the input dimension
two are zero, which Ampere and later tensor cores skip. The weights kept in each group
are the two with the highest Wanda score (Wanda's N:M variant, section 3 of its paper).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import top_k_rows
from dartsim.policies.wanda import prune_by_wanda

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder

N_KEPT = 2
M_GROUP = 4


def n_m_mask(scores: torch.Tensor, n: int = N_KEPT, m: int = M_GROUP) -> torch.Tensor:
    """Bool [out, in]: in each group of `m` consecutive inputs of a row, the `n` highest."""
    rows, width = scores.shape
    if width % m:
        raise ValueError(f"{m}-element groups need an input width divisible by {m}, got {width}")
    groups = scores.reshape(rows, width // m, m)
    return top_k_rows(groups, n).reshape(rows, width)


class TwoFour(HookedPolicy):
    name = "2:4"
    summary = "semi-structured 2-of-4 weight pruning ranked by the Wanda score"
    prunes = "weights"
    per_input = False
    order = 5
    options: ClassVar[frozenset[str]] = frozenset()
    needs_calibration = True

    def effective_sparsity(self, settings: PolicySettings) -> float:
        return N_KEPT / M_GROUP

    def weight_format(self, settings: PolicySettings) -> str:
        return "2:4"

    def prepare(self, runner: HookedRecorder, settings: PolicySettings) -> None:
        prune_by_wanda(runner, n_m_mask)


register(TwoFour())
