"""The published-code timeline, forward by forward, against the authors' code as read in
seeder-research/DART 19c4a57 (neuronDefuser.py; hook order of hook_setup.py:741-810).

A stand-in recorder replaces the model: each forward runs its layers in order, calls the
last layer's attention hook before that layer's FFN (as the Llama hooks do), and records
which tokens every layer's collection saw and whether each layer ran masked. The expected
values are worked out from the authors' rules (P = 120 prompt positions, M = 30, L = 4,
drift forced in the window ending at forward 45), not from dartsim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from dartsim.policies.dart.params import DartParams, DartSettings
from dartsim.policies.dart.published_timeline import PublishedTimeline
from dartsim.record.builder import TraceBuilder

LAYERS = 4
PROMPT = 120
M = 30
WIDTH = 8


@dataclass
class LabelledAccumulator:
    labels: list[list[str]] = field(default_factory=lambda: [[] for _ in range(LAYERS)])
    tokens: int = 0
    attention: list[torch.Tensor] = field(default_factory=list)


class StandInRecorder:
    """What PublishedTimeline uses of DartRecorder, with token labels instead of tensors."""

    layers = LAYERS

    def __init__(self, params: DartParams, mode: str = "dart") -> None:
        self.params = params
        self.settings = DartSettings(params, mode=mode)
        self.acc: LabelledAccumulator | None = None
        self.masked = [False] * LAYERS
        self.on_last_attention: Any = None
        self.masks_built: list[tuple[int, list[list[str]]]] = []

    def new_accumulator(self) -> LabelledAccumulator:
        return LabelledAccumulator()

    def clear_masks(self) -> None:
        self.masked = [False] * LAYERS

    def layer_dense(self, index: int) -> None:
        self.masked[index] = False

    def mask_record(self, acc: LabelledAccumulator, epoch: int, apply: bool) -> dict[str, Any]:
        self.masks_built.append((epoch, [list(layer) for layer in acc.labels]))
        if apply:
            self.masked = [True] * LAYERS
        return {
            "kept": torch.full((LAYERS,), WIDTH // 2, dtype=torch.int32),
            "keep_ratio": torch.full((LAYERS,), 0.5, dtype=torch.float64),
            "s_bar": torch.zeros(LAYERS, dtype=torch.float64),
            "importance": torch.zeros(LAYERS, dtype=torch.float64),
            "depth": torch.ones(LAYERS, dtype=torch.float64),
            "pruning": torch.full((LAYERS,), 0.5, dtype=torch.float64),
            "mask_bool": torch.ones(LAYERS, WIDTH, dtype=torch.bool),
            "build_time_s": 1e-6,
        }

    def run_forward(self, labels: list[str], attention: torch.Tensor) -> list[bool]:
        """Layers 0..L-1; the last layer's attention hook fires before its FFN."""
        ran_masked = []
        for layer in range(LAYERS):
            if layer == LAYERS - 1 and self.on_last_attention is not None:
                self.on_last_attention(attention)
            ran_masked.append(self.masked[layer])
            if self.acc is not None:
                self.acc.labels[layer].extend(labels)
        return ran_masked


def _direction(forward: int, drift_at: set[int]) -> torch.Tensor:
    """Attention output of a forward: e1, or e2 for the forwards that drift."""
    return torch.tensor([0.0, 1.0]) if forward in drift_at else torch.tensor([1.0, 0.0])


def _drive(forwards: int, drift_at: set[int], mode: str = "dart"):  # type: ignore[no-untyped-def]
    params = DartParams.published_code(masking_step=M)
    rec = StandInRecorder(params, mode)
    builder = TraceBuilder()
    timeline = PublishedTimeline(rec, builder)  # type: ignore[arg-type]
    timeline.before_prefill()
    prompt_attention = torch.stack([_direction(0, drift_at)] * PROMPT)
    rec.run_forward([f"p{i}" for i in range(PROMPT)], prompt_attention)
    builder.step("prefill", PROMPT, PROMPT, -1, 1e-3)
    timeline.after_prefill(PROMPT, prompt_attention)
    layer_states = {}
    for f in range(1, forwards):
        epoch = timeline.forward_epoch()
        timeline.before_decode()
        att = _direction(f, drift_at)
        layer_states[f] = rec.run_forward([f"g{f - 1}"], att.unsqueeze(0))
        builder.step("decode", 1, PROMPT + f, epoch, 1e-3)
        timeline.after_decode(f, att)
    return rec, builder, layer_states


def _span(first: int, last: int) -> list[str]:
    return [f"g{i}" for i in range(first, last + 1)]


def test_first_mask_scores_the_prompt_and_the_first_m_minus_1_tokens_and_applies_at_forward_m() -> None:
    rec, builder, states = _drive(40, drift_at=set())
    epoch, labels = rec.masks_built[0]
    assert epoch == 0
    expected = [f"p{i}" for i in range(PROMPT)] + _span(0, M - 2)  # P + M - 1 = 149 positions
    assert all(layer == expected for layer in labels)
    assert not any(states[M - 1]) and all(states[M])
    record = builder.epochs[0]
    assert record["first_step"] == M and record["trigger_step"] == -1
    # the drift reference: P + M positions (p0..g29), 30 windows of 5
    assert record["reference_tokens"] == PROMPT + M


def test_checks_run_every_tau_forwards_after_the_masking_forward() -> None:
    _, builder, _ = _drive(60, drift_at=set())
    assert [c["step"] for c in builder.checks] == [M + 5, M + 10, M + 15, M + 20, M + 25]
    # one reference from 150 identical directions: mu 1, sigma 0, threshold mu - 0.1
    assert all(c["threshold"] == 0.9 and not c["detected"] for c in builder.checks)


def test_a_retrigger_follows_the_authors_reset() -> None:
    drift_at = set(range(41, 46))  # the window checked at forward 45 drifts
    rec, builder, states = _drive(90, drift_at)
    assert [r["step"] for r in builder.retriggers] == [45]
    assert [c["step"] for c in builder.checks][:3] == [35, 40, 45]
    # forward 45: layers 0..2 ran with the old masks, the last layer's FFN dense
    assert states[45] == [True, True, True, False]
    # forwards 46..74 run dense; masks back at forward f + M = 75
    assert not any(any(states[f]) for f in range(46, 75)) and all(states[75])
    epoch, labels = rec.masks_built[1]
    assert epoch == 1
    assert labels[0] == labels[1] == labels[2] == _span(45, 73)  # M - 1 tokens
    assert labels[3] == _span(44, 73)  # the last layer also saw the trigger token g44
    second = builder.epochs[1]
    assert second["first_step"] == 75 and second["trigger_step"] == 45
    # the new reference: the M positions of forwards 46..75 (g45..g74), 6 windows
    assert second["reference_tokens"] == M
    assert [c["step"] for c in builder.checks][3:] == [80, 85]
    assert builder.retriggers[0]["epoch"] == 1


def test_static_mode_records_the_detection_and_keeps_the_mask() -> None:
    rec, builder, states = _drive(60, set(range(41, 46)), mode="static")
    assert builder.retriggers == [] and len(rec.masks_built) == 1
    fired = [c["step"] for c in builder.checks if c["fired"]]
    assert fired == [45] and all(states[f] == [True] * LAYERS for f in range(M, 60))


def test_dense_mode_builds_the_reference_but_never_masks() -> None:
    rec, builder, states = _drive(60, set(range(41, 46)), mode="dense")
    assert builder.epochs == [] and builder.checks == [] and not any(any(s) for s in states.values())
    assert len(rec.masks_built) == 1  # built (for the record of what it would be), not applied


def test_a_timeline_that_leaves_a_step_out_cannot_be_built() -> None:
    from dartsim.policies.dart.paper_timeline import PaperTimeline
    from dartsim.policies.dart.published_timeline import PublishedTimeline
    from dartsim.policies.dart.timeline import Timeline

    class Partial(Timeline):
        def before_prefill(self) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial(None, None)  # type: ignore[arg-type]
    assert not PaperTimeline.__abstractmethods__ and not PublishedTimeline.__abstractmethods__
