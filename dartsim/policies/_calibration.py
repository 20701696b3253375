"""What the offline policies learn from the calibration split, in one pass over it:
input norms of every decoder linear layer (Wanda, 2:4), the moments of a neuron
predictor's least-squares fit (Deja Vu), gradient x activation saliency overall and per
task category, and the category centroids of the prompt classifier (KG-DS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dartsim.policies.kgds import saliency as kgds_saliency
from dartsim.record.corpus import categories, passages
from dartsim.record.hooks import decoder_layers
from dartsim.record.model import LoadedModel

CALIBRATION_TOKENS = 256
"""Tokens taken from the start of each calibration passage (raw text, no chat template)."""
LINEAR_INPUTS = ("attn_in", "o_in", "mlp_in", "down_in")
"""Inputs shared by the decoder's linear layers: q/k/v, o_proj, gate/up, down_proj."""


@dataclass
class CalibrationStats:
    input_sq: dict[str, list[torch.Tensor]]
    """Per linear input kind and layer, the sum over tokens of each feature's square."""
    xtx: list[torch.Tensor]
    """Per layer X^T X of the FFN inputs [d, d] (float64)."""
    xty: list[torch.Tensor]
    """Per layer X^T |u| [d, m] (float64)."""
    saliency: torch.Tensor
    """[L, m] gradient x activation saliency over all calibration text."""
    category_saliency: torch.Tensor
    """[K, L, m] the same per task category."""
    centroids: torch.Tensor
    """[K, d] mean input embedding of each category's passages."""
    categories: list[str]
    tokens: int


def calibration_ids(
    loaded: LoadedModel, per_category: int | None = None, tokens: int = CALIBRATION_TOKENS
) -> list[tuple[str, list[int]]]:
    """(category, token ids) of the calibration passages (the first `per_category` of each
    category when given), each cut to its first `tokens` tokens."""
    out = []
    taken: dict[str, int] = {}
    for p in passages("calibration"):
        if per_category is not None and taken.get(p.category, 0) >= per_category:
            continue
        taken[p.category] = taken.get(p.category, 0) + 1
        ids = list(loaded.tokenizer(p.text)["input_ids"])[:tokens]
        out.append((p.category, [int(i) for i in ids]))
    return out


def calibrate(
    loaded: LoadedModel,
    progress: Callable[[int, int], None] | None = None,
    per_category: int | None = None,
    tokens: int = CALIBRATION_TOKENS,
) -> CalibrationStats:
    """One forward and backward pass per calibration passage (about 40 s for SmolLM2 and
    the whole split on two cores; tests take one short passage per category)."""
    model = loaded.model
    layers = decoder_layers(model)
    spec = loaded.spec
    L, d, m = spec.num_layers, spec.hidden_size, spec.intermediate_size
    cats = categories()
    stats = CalibrationStats(
        input_sq={k: [torch.zeros(0)] * L for k in LINEAR_INPUTS},
        xtx=[torch.zeros(d, d, dtype=torch.float64) for _ in range(L)],
        xty=[torch.zeros(d, m, dtype=torch.float64) for _ in range(L)],
        saliency=torch.zeros(L, m, dtype=torch.float64),
        category_saliency=torch.zeros(len(cats), L, m, dtype=torch.float64),
        centroids=torch.zeros(len(cats), d, dtype=torch.float64),
        categories=cats,
        tokens=0,
    )
    seen: dict[int, list[torch.Tensor]] = {}
    u_keep: list[torch.Tensor | None] = [None] * L

    def sq(kind: str, layer: int) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            acc = stats.input_sq[kind]
            acc[layer] = acc[layer] + x.pow(2).sum(dim=0) if acc[layer].numel() else x.pow(2).sum(dim=0)
            if kind == "mlp_in":
                seen.setdefault(layer, []).append(x)
            if kind == "down_in":
                args[0].retain_grad()
                u_keep[layer] = args[0]

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.q_proj.register_forward_pre_hook(sq("attn_in", i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(sq("o_in", i)))
        handles.append(layer.mlp.register_forward_pre_hook(sq("mlp_in", i)))
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(sq("down_in", i)))
    embed = model.get_input_embeddings()
    handles.append(embed.register_forward_hook(lambda _m, _a, out: out.detach().requires_grad_(True)))
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    counts = torch.zeros(len(cats), dtype=torch.float64)
    items = calibration_ids(loaded, per_category, tokens)
    try:
        for n, (category, ids) in enumerate(items):
            k = cats.index(category)
            x = torch.tensor([ids], device=next(model.parameters()).device)
            with torch.enable_grad():
                out = model(input_ids=x, labels=x, use_cache=False)
                out.loss.backward()
            for layer in range(L):
                u = u_keep[layer]
                assert u is not None and u.grad is not None
                u2, g2 = u.detach()[0].double(), u.grad[0].double()
                sal = kgds_saliency(u2, g2)
                stats.saliency[layer] += sal
                stats.category_saliency[k, layer] += sal
                xs = seen.pop(layer)[0]
                stats.xtx[layer] += xs.T @ xs
                stats.xty[layer] += xs.T @ u2.abs()
            with torch.no_grad():
                stats.centroids[k] += embed(x)[0].double().mean(dim=0)
            counts[k] += 1
            stats.tokens += len(ids)
            if progress is not None:
                progress(n + 1, len(items))
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
    stats.centroids /= counts.clamp_min(1).unsqueeze(-1)
    return stats
