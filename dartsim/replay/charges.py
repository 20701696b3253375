"""What a batch's policy costs at replay beyond its kept FFN neurons: the policy itself
(from the registry, policies/: its weight storage, predictor, mask switch and observation
work) and the heads it keeps per layer on the target model.

A retargeted trace carries fractions, not indices: a layer keeps the same fraction of
query heads and of KV heads as the source layer at the same depth, and a predictor keeps
the same rank relative to the hidden size.
"""

from __future__ import annotations

from collections.abc import Sequence

from dartsim.errors import UserError
from dartsim.policies import Policy, get_policy
from dartsim.specs.model import ModelSpec
from dartsim.trace.types import ModelInfo, PolicySection, Trace
from dartsim.workload import kept_count


def batch_policy(traces: Sequence[Trace]) -> tuple[Policy, PolicySection]:
    """The one policy every trace of a batch shares (an error otherwise), and its section."""
    sections = [t.policy for t in traces]
    names = {(p.name, tuple(sorted(p.params.items()))) for p in sections}
    if len(names) > 1:
        listed = ", ".join(sorted({p.name for p in sections}))
        raise UserError(
            f"traces recorded under different policies or settings cannot form one batch ({listed})"
        )
    policy = get_policy(sections[0].name)
    if policy.per_token and len(traces) > 1:
        raise UserError(
            f"{policy.name} traces replay one at a time: the union of per-token masks "
            "across a batch is not modelled"
        )
    return policy, sections[0]


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
