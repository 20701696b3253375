"""KG-DS: knowledge-guided dynamic sparsity: a protected knowledge core plus one mask per
task category, chosen per prompt by a lightweight classifier.

Follows the KG-DS proposal (shared/papers/kg-ds-proposal.txt, "Phase 1" and "Phase 2"):

- offline, a saliency per FFN neuron from gradient and activation on calibration text,
  |u_j * dL/du_j| summed over tokens (the first-order loss change of removing neuron j, as
  in GBLM-Pruner and Wanda++, which the proposal cites); the most salient neurons of every
  layer form the knowledge core, protected in every mask;
- per task category, the rest of the layer's budget goes to the neurons most salient on
  that category's calibration text;
- per prompt, a classifier on the model's own embeddings picks the category: dartsim's is
  the nearest centroid (cosine) of the prompt's mean input embedding, the lightest
  classifier that needs no training loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import keep_count, top_k_rows

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder


def saliency(u: torch.Tensor, grad_u: torch.Tensor) -> torch.Tensor:
    """u, dL/du [T, m] -> [m] = sum over t of |u * dL/du|."""
    return (u.double() * grad_u.double()).abs().sum(dim=0)


def core_and_category_masks(
    core_saliency: torch.Tensor, category_saliency: torch.Tensor, keep_fraction: float, core_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """core_saliency [L, m], category_saliency [K, L, m] -> (core [L, m], masks [K, L, m]).

    Every layer keeps k = round(keep * m) neurons: the core, the round(core_fraction * k)
    most salient over all calibration text, then each category's most salient others.
    """
    import torch

    if not 0.0 <= core_fraction <= 1.0:
        raise ValueError(f"core fraction must lie in [0, 1], got {core_fraction}")
    width = core_saliency.shape[-1]
    k = keep_count(keep_fraction, width)
    core = top_k_rows(core_saliency, int(core_fraction * k + 0.5))
    rest = k - int(core[0].sum())
    others = category_saliency.double().masked_fill(core.unsqueeze(0), -torch.inf)
    return core, core.unsqueeze(0) | top_k_rows(others, rest)


def centroids(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """Per category, the mean of its calibration texts' mean embeddings: [K, d]."""
    import torch

    return torch.stack([e.double().mean(dim=0) for e in embeddings])


def classify(mean_embedding: torch.Tensor, category_centroids: torch.Tensor) -> int:
    """The category whose centroid is nearest by cosine (ties: the lower index)."""
    import torch

    sims = torch.nn.functional.cosine_similarity(
        category_centroids.double(), mean_embedding.double().unsqueeze(0), dim=-1
    )
    return int(torch.sort(-sims, stable=True).indices[0])


class Kgds(HookedPolicy):
    name = "kgds"
    summary = (
        "KG-DS: a gradient x activation knowledge core plus one FFN mask per task category, "
        "picked per prompt by a nearest-centroid classifier"
    )
    prunes = "ffn-neurons"
    per_input = True
    order = 7
    options: ClassVar[frozenset[str]] = frozenset({"sparsity", "core_fraction"})
    offline_masks = True
    needs_calibration = True

    def params(self, settings: PolicySettings) -> dict[str, Any]:
        return {**super().params(settings), "core_fraction": settings.core_fraction}

    def prepare(self, runner: HookedRecorder, settings: PolicySettings) -> None:
        stats = runner.stats
        _, runner.state["category_masks"] = core_and_category_masks(
            stats.saliency, stats.category_saliency, 1.0 - settings.sparsity, settings.core_fraction
        )

    def prompt_masks(
        self,
        runner: HookedRecorder,
        settings: PolicySettings,
        prompt_ids: list[int],
        observed: dict[str, list[torch.Tensor]],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        import torch

        embed = runner.loaded.model.get_input_embeddings()
        with torch.no_grad():
            ids = torch.tensor(prompt_ids, device=embed.weight.device)
            mean = embed(ids).double().mean(dim=0).cpu()
        k = classify(mean, runner.stats.centroids)
        runner.state["category"] = runner.stats.categories[k]
        return runner.state["category_masks"][k], None

    def run_params(self, runner: HookedRecorder, settings: PolicySettings) -> dict[str, Any]:
        return {
            **self.params(settings),
            "classifier_classes": len(runner.stats.categories),
            "category": runner.state.get("category") or "",
        }


register(Kgds())
