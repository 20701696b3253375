"""DART: per-layer neuron masks, budget allocation, the knowledge-drift detector, the
recorder and timelines that run them on Hugging Face models, a plain-Python reference of
the mask computation, and synthetic DART traces. Registered here as one policy among
the others."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.policies._registry import Policy, PolicyRecorder, register
from dartsim.policies.dart.params import DartParams, DartSettings

__all__ = ["DART", "Dart", "DartParams", "DartPolicyRecorder", "DartSettings", "record_dart"]

if TYPE_CHECKING:
    from pathlib import Path

    from dartsim.record.builder import TraceBuilder
    from dartsim.record.loop import Controller, GenerationOptions
    from dartsim.record.model import LoadedModel
    from dartsim.record.session import RecordResult
    from dartsim.trace.types import Trace

PARAM_OPTIONS = (
    "sparsity",
    "tau",
    "reference_tokens",
    "delta",
    "c0",
    "alpha_e",
    "alpha_l",
    "beta_e",
    "beta_l",
    "p_min",
    "p_max",
    "prompt_in_reference",
    "masking_step",
    "ranking",
)
"""`record` options that set a DartParams field of the same name."""


class Dart(Policy):
    name = "dart"
    summary = "DART: FFN masks from observed activations, rebuilt when knowledge drift is detected"
    prunes = "ffn-neurons"
    per_input = True
    order = 2
    options: ClassVar[frozenset[str]] = frozenset(
        {*PARAM_OPTIONS, "preset", "mode", "mask_apply", "fix_published_defects"}
    )

    def observes(self, trace: Trace, epoch: int, phase: str) -> bool:
        """DART scores every dense step of a collection window (and the prompt when it
        joins the reference); its dense mode observes nothing."""
        if trace.dart_mode == "dense" or epoch >= 0:
            return False
        return phase == "decode" or trace.prompt_in_reference

    def settings(self, options: Mapping[str, Any]) -> DartSettings:
        given = {k: options[k] for k in PARAM_OPTIONS if options.get(k) is not None}
        if options.get("fix_published_defects"):
            given["reproduce_published_defects"] = False
        params = DartParams.preset(str(options.get("preset") or "paper"), **given)
        return DartSettings(
            params, str(options.get("mode") or "dart"), str(options.get("mask_apply") or "zero")
        )

    def effective_sparsity(self, settings: DartSettings) -> float:
        return settings.params.sparsity

    def recorder(self, loaded: LoadedModel, settings: DartSettings, stats: Any) -> PolicyRecorder:
        return DartPolicyRecorder(self, settings, loaded)


class DartPolicyRecorder(PolicyRecorder):
    """DART on a loaded model: a fresh recorder (hooks, accumulators) per recording."""

    def __init__(
        self, policy: Dart, settings: DartSettings, loaded: LoadedModel, capture: bool = False
    ) -> None:
        self.policy = policy
        self.settings = settings
        self.loaded = loaded
        self.capture = capture

    def controller(self, builder: TraceBuilder) -> Controller:
        from dartsim.policies.dart.controller import DartController

        return DartController(self.loaded, self.settings, builder, self.capture)


DART = register(Dart())


def record_dart(
    loaded: LoadedModel,
    prompt: str,
    settings: DartSettings | DartParams,
    options: GenerationOptions,
    out: Path | None,
    **kwargs: Any,
) -> RecordResult:
    """One DART recording (record/session.py `record` with DART prepared on `loaded`);
    `kwargs` are record's (chat_template, progress, trace_enabled, on_logits, prompt_ids)."""
    from dartsim.record.session import record

    if isinstance(settings, DartParams):
        settings = DartSettings(settings)
    return record(loaded, DART.recorder(loaded, settings, None), prompt, options, out, **kwargs)
