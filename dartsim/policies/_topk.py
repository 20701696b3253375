"""Top-k selection shared by the policies: deterministic (ties go to the lower index)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dartsim.workload import kept_count

if TYPE_CHECKING:
    import torch


def top_k_rows(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the `k` highest scores in every row of `scores` [..., n]; ties go to
    the lower index (a stable sort), so the same scores always give the same mask."""
    import torch

    if not 0 <= k <= scores.shape[-1]:
        raise ValueError(f"cannot keep {k} of {scores.shape[-1]} entries")
    order = torch.sort(-scores.double(), dim=-1, stable=True).indices
    mask = torch.zeros(scores.shape, dtype=torch.bool)
    mask.scatter_(-1, order[..., :k].cpu(), True)
    return mask


def keep_count(keep_fraction: float, width: int) -> int:
    """Entries kept of `width` for a kept fraction (halves up, at least one)."""
    return max(1, kept_count(keep_fraction, width))
