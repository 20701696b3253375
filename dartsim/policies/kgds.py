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

import torch

from dartsim.policies.masks import keep_count, top_k_rows

DEFAULT_CORE_FRACTION = 0.5
"""Share of each layer's kept neurons reserved for the knowledge core (the proposal gives
no value)."""


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
    return torch.stack([e.double().mean(dim=0) for e in embeddings])


def classify(mean_embedding: torch.Tensor, category_centroids: torch.Tensor) -> int:
    """The category whose centroid is nearest by cosine (ties: the lower index)."""
    sims = torch.nn.functional.cosine_similarity(
        category_centroids.double(), mean_embedding.double().unsqueeze(0), dim=-1
    )
    return int(torch.sort(-sims, stable=True).indices[0])
