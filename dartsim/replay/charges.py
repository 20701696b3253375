"""What a trace's policy costs at replay beyond its kept FFN neurons, on the target model:
weight storage, a per-token predictor, the mask switch, and the heads it keeps per layer.

A retargeted trace carries fractions, not indices: a layer keeps the same fraction of
query heads and of KV heads as the source layer at the same depth, and a predictor keeps
the same rank relative to the hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dartsim.errors import UserError
from dartsim.specs.model import ModelSpec
from dartsim.trace.types import ModelInfo, PolicySection, Trace
from dartsim.workload import kept_count
from dartsim.workload.policy_costs import PolicyCosts
from dartsim.workload.sparse_storage import TWO_FOUR_DENSITY, WeightStorage

PER_TOKEN_POLICIES = ("dejavu",)
"""Policies whose mask changes every token by design: no mask build, a predictor instead."""
PROMPT_OBSERVING_POLICIES = ("static", "dsgp")
"""Policies that score neurons (or heads) on the prompt's activations during prefill."""
OFFLINE_MASK_POLICIES = ("kgds",)
"""Policies whose masks are computed offline: a mask switch installs one, no top-k."""


def batch_policy(traces: Sequence[Trace]) -> PolicySection:
    """The one policy every trace of a batch shares (an error otherwise)."""
    policies = [t.policy for t in traces]
    names = {(p.name, tuple(sorted(p.params.items()))) for p in policies}
    if len(names) > 1:
        listed = ", ".join(sorted({p.name for p in policies}))
        raise UserError(
            f"traces recorded under different policies or settings cannot form one batch ({listed})"
        )
    if policies[0].name in PER_TOKEN_POLICIES and len(traces) > 1:
        raise UserError(
            f"{policies[0].name} traces replay one at a time: the union of per-token masks "
            "across a batch is not modelled"
        )
    return policies[0]


def policy_costs(policy: PolicySection, source_hidden: int, target: ModelSpec) -> PolicyCosts:
    """The PolicyCosts of `policy` on `target` (recorded on a model of width `source_hidden`)."""
    fmt = policy.weight_format
    density = float(policy.weight_density.mean()) if fmt != "dense" else 1.0
    if fmt == "2:4":
        density = TWO_FOUR_DENSITY
    params = policy.params
    rank = int(params.get("predictor_rank", 0))
    if rank:
        rank = max(1, math.ceil(rank * target.hidden_size / source_hidden))
    return PolicyCosts(
        weights=WeightStorage(fmt, density),
        predictor_rank=rank,
        build_topk=policy.name not in OFFLINE_MASK_POLICIES,
        classifier_classes=int(params.get("classifier_classes", 0)),
        per_token=policy.name in PER_TOKEN_POLICIES,
    )


def head_counts(
    policy: PolicySection, source: ModelInfo, target: ModelSpec, layer_of: Sequence[int], retarget: bool
) -> tuple[tuple[int, int], ...] | None:
    """Per target layer the (query, KV) heads kept, or None when every head is."""
    masks = policy.head_masks
    if bool(masks.all()):
        return None
    heads, kv_heads = source.num_heads, source.num_kv_heads
    group = heads // kv_heads
    kept_q = masks.sum(axis=-1)
    kept_kv = masks.reshape(masks.shape[0], kv_heads, group).any(axis=-1).sum(axis=-1)
    out = []
    for layer in range(target.num_layers):
        q, kv = int(kept_q[layer_of[layer]]), int(kept_kv[layer_of[layer]])
        if retarget:
            q = max(1, kept_count(q / heads, target.num_heads))
            kv = max(1, kept_count(kv / kv_heads, target.num_kv_heads))
        out.append((q, kv))
    return tuple(out)
