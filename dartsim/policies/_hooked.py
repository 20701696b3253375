"""The base of policies that act through forward hooks (record/hooked.py applies them):
every policy but DART. A subclass overrides the rules it has; the defaults do nothing
(no offline work, no prompt masks, dense weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.errors import UserError
from dartsim.policies._registry import Policy, PolicyRecorder, PolicySettings

if TYPE_CHECKING:
    import torch

    from dartsim.policies._calibration import CalibrationStats
    from dartsim.record.hooked import HookedRecorder
    from dartsim.record.loop import Controller
    from dartsim.record.model import LoadedModel


class HookedPolicy(Policy):
    """A policy recorded by record/hooked.py: its methods below are the hook rules."""

    observes_prompt: ClassVar[tuple[str, ...]] = ()
    """Activations the prefill collects for `prompt_masks`: "u" (down_proj's input), "o"
    (o_proj's input)."""

    def recorder(
        self, loaded: LoadedModel, settings: PolicySettings, stats: CalibrationStats | None
    ) -> PolicyRecorder:
        if self.needs_calibration and stats is None:
            raise ValueError(f"policy {self.name} needs calibration statistics")
        return _Hooked(self, settings, loaded, stats)

    # -- the rules (defaults: none) -----------------------------------------------------------

    def prepare(self, runner: HookedRecorder, settings: PolicySettings) -> None:
        """Offline work on the loaded model (prune weights, fit predictors, ...)."""

    def prompt_masks(
        self,
        runner: HookedRecorder,
        settings: PolicySettings,
        prompt_ids: list[int],
        observed: dict[str, list[torch.Tensor]],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(FFN masks [L, m], head masks [L, H]) the prompt selects, each None for none."""
        return None, None

    def token_mask(
        self, runner: HookedRecorder, settings: PolicySettings, layer: int, x: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        """Bool [T, m]: each token's kept neurons (per-token policies only)."""
        raise UserError(f"policy {self.name} chooses no per-token mask")

    def weight_format(self, settings: PolicySettings) -> str:
        """How its pruned decoder weights are stored (trace policy.weight_format)."""
        return "dense"

    def run_params(self, runner: HookedRecorder, settings: PolicySettings) -> dict[str, Any]:
        """policy.params of a recording: the settings, plus what the run decided."""
        return self.params(settings)


class _Rules:
    """A HookedPolicy with its settings bound: the duck-typed rules record/hooked.py calls."""

    def __init__(self, policy: HookedPolicy, settings: PolicySettings) -> None:
        self.policy = policy
        self.settings = settings
        self.name = policy.name
        self.observes_prompt = policy.observes_prompt
        self.per_token = policy.per_token

    def prepare(self, runner: HookedRecorder) -> None:
        self.policy.prepare(runner, self.settings)

    def prompt_masks(
        self, runner: HookedRecorder, prompt_ids: list[int], observed: dict[str, list[torch.Tensor]]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.policy.prompt_masks(runner, self.settings, prompt_ids, observed)

    def token_mask(
        self, runner: HookedRecorder, layer: int, x: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        return self.policy.token_mask(runner, self.settings, layer, x, u)

    def trace_params(self, runner: HookedRecorder) -> dict[str, Any]:
        return self.policy.run_params(runner, self.settings)

    def weight_format(self) -> str:
        return self.policy.weight_format(self.settings)


class _Hooked(PolicyRecorder):
    def __init__(
        self,
        policy: HookedPolicy,
        settings: PolicySettings,
        loaded: LoadedModel,
        stats: CalibrationStats | None,
    ) -> None:
        from dartsim.record.hooked import HookedRecorder

        self.policy = policy
        self.settings = settings
        self.runner = HookedRecorder(loaded, _Rules(policy, settings), stats)

    def controller(self, builder: Any) -> Controller:
        return self.runner.controller(builder)

    def close(self) -> None:
        self.runner.close()
