"""DSGP: dynamic structured pruning of attention heads and FFN neurons, by each one's
sensitivity on the current input.

Follows the DSGP abstract (Zhu, Cui and Zhang, "Dynamic Structured Pruning for LLMs based
on Real-Time Sensitivity Analysis", 2025; shared/papers/dsgp-abstract.txt): a lightweight
sensitivity analysis scores heads and FFN neurons per inference and a mask prunes the
least sensitive. The abstract gives no formula, so dartsim uses the first-order effect of
removing a component on its block's output, measured on the prompt:

- head h of a layer: mean over prompt tokens of ||W_o[:, h] o_h|| / ||W_o o||, the share
  of the attention output the head contributes;
- FFN neuron j: mean over prompt tokens of |u_j| ||W_down[:, j]||, the size of the output
  change if the neuron were removed.

Each layer keeps the same fraction of heads and of neurons (at least one head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import keep_count, top_k_rows

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder

NORM_FLOOR = 1e-12


def head_sensitivity(o: torch.Tensor, w_o: torch.Tensor, heads: int) -> torch.Tensor:
    """o [T, H hd] (the input of o_proj), w_o [d, H hd] -> [H]."""
    import torch

    width = o.shape[-1]
    hd = width // heads
    o64, w64 = o.double(), w_o.double()
    per_head = torch.stack(
        [o64[:, h * hd : (h + 1) * hd] @ w64[:, h * hd : (h + 1) * hd].T for h in range(heads)]
    )  # [H, T, d]
    total = (o64 @ w64.T).norm(dim=-1).clamp_min(NORM_FLOOR)  # [T]
    return (per_head.norm(dim=-1) / total).mean(dim=-1)


def neuron_sensitivity(u: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """u [T, m] (the input of down_proj), w_down [d, m] -> [m]."""
    return u.double().abs().mean(dim=0) * w_down.double().norm(dim=0)


def keep_top(sensitivity: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Bool [L, n]: each layer's top round(keep * n) components (at least one)."""
    return top_k_rows(sensitivity, keep_count(keep_fraction, sensitivity.shape[-1]))


class Dsgp(HookedPolicy):
    name = "dsgp"
    summary = "DSGP: attention heads and FFN neurons pruned by their sensitivity on the prompt"
    prunes = "heads+ffn-neurons"
    per_input = True
    order = 6
    options: ClassVar[frozenset[str]] = frozenset({"sparsity", "head_sparsity"})
    scores_prompt = True
    observes_prompt: ClassVar[tuple[str, ...]] = ("u", "o")

    def params(self, settings: PolicySettings) -> dict[str, Any]:
        return {**super().params(settings), "head_sparsity": settings.head_sparsity}

    def prompt_masks(
        self,
        runner: HookedRecorder,
        settings: PolicySettings,
        prompt_ids: list[int],
        observed: dict[str, list[torch.Tensor]],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        import torch

        u, o, layers = observed["u"], observed["o"], runner.layers
        neurons = torch.stack(
            [neuron_sensitivity(u[i], layers[i].mlp.down_proj.weight.detach().cpu()) for i in range(runner.L)]
        )
        heads = torch.stack(
            [
                head_sensitivity(o[i], layers[i].self_attn.o_proj.weight.detach().cpu(), runner.heads)
                for i in range(runner.L)
            ]
        )
        return keep_top(neurons, 1.0 - settings.sparsity), keep_top(heads, 1.0 - settings.head_sparsity)


register(Dsgp())
