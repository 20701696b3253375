"""GRIFFIN-style static FFN pruning: neurons chosen once from the prompt, kept for the
whole generation.

Follows GRIFFIN (Dong, Chen and Chi, "Prompt-prompted Adaptive Structured Pruning for
Efficient LLM Generation", 2024, section 3): every prompt token's FFN activation row is
normalised to unit length, and a neuron's score is the l2 norm of its column over the
prompt ("flocking": neurons relevant to the prompt stay relevant while it is continued).
Every layer keeps the same number of neurons, the top-k by that score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import keep_count, top_k_rows

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder

ROW_NORM_FLOOR = 1e-12
"""Below this a token's activation row is treated as zero (no division by zero)."""


def griffin_scores(u: torch.Tensor) -> torch.Tensor:
    """Per-neuron scores of one layer: u [T, m] (the input of down_proj for the prompt's
    tokens) -> [m] = || u_t / ||u_t|| ||_2 over t."""
    u64 = u.double()
    rows = u64 / u64.norm(dim=-1, keepdim=True).clamp_min(ROW_NORM_FLOOR)
    return rows.norm(dim=0)


def static_masks(u_per_layer: list[torch.Tensor], keep_fraction: float) -> torch.Tensor:
    """Bool [L, m]: in every layer the top round(keep * m) neurons by GRIFFIN's score."""
    import torch

    scores = torch.stack([griffin_scores(u) for u in u_per_layer])
    return top_k_rows(scores, keep_count(keep_fraction, scores.shape[-1]))


class Static(HookedPolicy):
    name = "static"
    summary = "GRIFFIN-style: FFN neurons chosen once from the prompt's activations, kept for the whole run"
    prunes = "ffn-neurons"
    per_input = True
    order = 1
    scores_prompt = True
    observes_prompt: ClassVar[tuple[str, ...]] = ("u",)

    def prompt_masks(
        self,
        runner: HookedRecorder,
        settings: PolicySettings,
        prompt_ids: list[int],
        observed: dict[str, list[torch.Tensor]],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return static_masks(observed["u"], 1.0 - settings.sparsity), None


register(Static())
