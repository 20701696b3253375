"""No pruning: the reference every policy is compared with (its traces replay as dense
steps, and its quality is the baseline of every other policy's)."""

from __future__ import annotations

from typing import ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register


class Dense(HookedPolicy):
    name = "dense"
    summary = "no pruning: the reference every policy is compared with"
    prunes = "nothing"
    per_input = False
    order = 0
    options: ClassVar[frozenset[str]] = frozenset()

    def effective_sparsity(self, settings: PolicySettings) -> float:
        return 0.0


register(Dense())
