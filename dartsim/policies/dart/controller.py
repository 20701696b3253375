"""DART inside the one token loop (record/loop.py): the recorder's hooks and a variant's
timeline around every forward, and the Figure 5 similarity curve of the trace."""

from __future__ import annotations

import math
from typing import Any

import torch

from dartsim.policies.dart import drift
from dartsim.policies.dart.params import DartSettings
from dartsim.policies.dart.recorder import DartRecorder
from dartsim.policies.dart.timeline import Timeline
from dartsim.record.builder import TraceBuilder
from dartsim.record.loop import Controller
from dartsim.record.model import LoadedModel
from dartsim.trace.schema import FIGURE5_WINDOW, new_policy_section


def timeline_for(recorder: DartRecorder, builder: TraceBuilder) -> Timeline:
    """The variant's timeline (the paper's, or the published code's)."""
    if recorder.params.variant == "published-code":
        from dartsim.policies.dart.published_timeline import PublishedTimeline

        return PublishedTimeline(recorder, builder)
    from dartsim.policies.dart.paper_timeline import PaperTimeline

    return PaperTimeline(recorder, builder)


class DartController(Controller):
    """One DART recording: hooks installed at construction, removed by `close`."""

    def __init__(
        self, loaded: LoadedModel, settings: DartSettings, builder: TraceBuilder, capture: bool = False
    ) -> None:
        self.settings = settings
        self.builder = builder
        self.rec = DartRecorder(loaded, settings, capture)
        self.timeline = timeline_for(self.rec, builder)
        self.history: list[torch.Tensor] = []
        """Last-layer attention outputs of the decode steps, for Figure 5."""

    def before_prefill(self) -> None:
        self.timeline.before_prefill()

    def after_prefill(self, prompt_ids: list[int]) -> None:
        self.timeline.after_prefill(len(prompt_ids), self.rec.last_attention())

    def decode_epoch(self) -> int:
        epoch = self.timeline.forward_epoch()
        self.timeline.before_decode()
        return epoch

    def after_decode(self, step_index: int) -> None:
        att = self.rec.last_attention()[-1]
        self.history.append(att)
        reference = self.timeline.first_reference
        if reference is not None and len(self.history) >= FIGURE5_WINDOW:
            recent = torch.stack(self.history[-FIGURE5_WINDOW:])
            self.builder.similarity(drift.window_similarity(recent, reference.mean))
        else:
            self.builder.similarity(math.nan)
        self.timeline.after_decode(step_index, att)

    def close(self) -> None:
        self.rec.close()

    def trace_sections(self) -> dict[str, Any]:
        spec = self.rec.loaded.spec
        mode = self.settings.mode
        return {
            "dart": self.settings.dart_section(),
            "policy": new_policy_section(
                "dense" if mode == "dense" else "dart", spec.num_layers, spec.num_heads, {"mode": mode}
            ),
        }
