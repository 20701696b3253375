"""What a sparsity policy changes in a step's work beyond its kept FFN neurons: how the
decoder weights are stored, a per-token neuron predictor, and what a mask switch does.
Heads a policy prunes are passed per layer to `attention_block`."""

from __future__ import annotations

from dataclasses import dataclass, field

from dartsim.errors import UserError
from dartsim.workload.sparse_storage import WeightStorage


@dataclass(frozen=True)
class PolicyCosts:
    weights: WeightStorage = field(default_factory=WeightStorage)
    predictor_rank: int = 0
    """Rank of the per-token FFN neuron predictor (Deja Vu-style); 0: none."""
    build_topk: bool = True
    """Whether installing a mask first ranks the layer's scores (DART, GRIFFIN, DSGP), or
    installs a mask computed offline (KG-DS)."""
    classifier_classes: int = 0
    """Categories of a prompt classifier run before the first mask (KG-DS); 0: none."""
    per_token: bool = False
    """The mask changes every token (Deja Vu): the kept rows are gathered by index each
    step, whatever --mask-apply says, and no mask is ever compacted."""

    def __post_init__(self) -> None:
        for name in ("predictor_rank", "classifier_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"{name.replace('_', ' ')} must be a non-negative integer, got {value!r}")


NO_POLICY_COSTS = PolicyCosts()
