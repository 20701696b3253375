"""The token loop of a recording and the interface of the DART state machines it drives.

The loop (prefill, then one forward per generated token) is the same for every variant;
what differs is when scores are collected, when masks come into force, how the drift
reference is built and what a re-trigger does. Those decisions live in a `Timeline`:
dart/paper_timeline.py (the paper) and dart/published_timeline.py (the authors' code).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from dartsim.dart import drift
from dartsim.dart.params import FIGURE5_WINDOW
from dartsim.dart.trace_builder import TraceBuilder

if TYPE_CHECKING:
    from dartsim.dart.recorder import DartRecorder


class Timeline(ABC):
    """One variant's DART state machine. The loop calls, in order: `before_prefill`,
    `after_prefill`, then per decode token `forward_epoch`, `before_decode`, the forward,
    and `after_decode`. A variant must define all five (an abstract base: a timeline that
    leaves one out cannot be constructed)."""

    def __init__(self, recorder: DartRecorder, builder: TraceBuilder) -> None:
        self.rec = recorder
        self.builder = builder
        self.epoch = -1
        """Index of the last mask epoch put in force (-1 before the first)."""
        self.trigger_step = -1
        """The step whose drift check fired the collection in progress (-1: the first mask)."""
        self.first_reference: drift.Reference | None = None

    def put_in_force(self, record: dict[str, Any]) -> None:
        """Record a built mask epoch as starting at the next step, and account the
        re-trigger that led to it."""
        record["first_step"] = self.builder.step_count
        record["trigger_step"] = self.trigger_step
        self.builder.epoch(record)
        self.epoch += 1
        self.builder.retrigger_resolved(self.epoch)

    @abstractmethod
    def before_prefill(self) -> None:
        """Set up collection for the prompt's forward."""

    @abstractmethod
    def after_prefill(self, prompt_len: int, attention: torch.Tensor) -> None:
        """`attention`: the last layer's attention outputs of every prompt position [P, d]."""

    @abstractmethod
    def forward_epoch(self) -> int:
        """The mask epoch the next forward runs under (-1: dense)."""

    @abstractmethod
    def before_decode(self) -> None:
        """Set up the next decode forward (masks, collection, checks)."""

    @abstractmethod
    def after_decode(self, step_index: int, attention: torch.Tensor) -> None:
        """`attention`: the last layer's attention output of the new token [d]."""


def generate(
    rec: DartRecorder,
    timeline: Timeline,
    prompt_ids: list[int],
    builder: TraceBuilder,
    eos_ids: set[int],
    summary: dict[str, Any],
    on_token: Callable[[int], None] | None,
    on_logits: Callable[[torch.Tensor], None] | None = None,
) -> None:
    """Generate up to max_new_tokens after the prompt under `timeline`, filling `builder`
    and `summary` (generated ids, whether EOS stopped it) as it goes, so that after an
    exception or an interrupt both still hold every completed step. `on_logits` sees the
    logits each forward produced (the prefill's first), before the token is chosen."""
    from transformers.cache_utils import DynamicCache

    o = rec.options
    gen = torch.Generator().manual_seed(o.seed)
    device = next(rec.model.parameters()).device
    cache = DynamicCache()
    summary.update(generated_ids=[], stopped_at_eos=False)
    history: list[torch.Tensor] = []

    timeline.before_prefill()
    ids = torch.tensor([prompt_ids], device=device)
    logits, seconds = rec.forward(ids, cache, 0)
    position = len(prompt_ids)
    builder.step("prefill", len(prompt_ids), position, -1, seconds)
    timeline.after_prefill(len(prompt_ids), rec.last_attention())

    generated: list[int] = []
    while True:
        if on_logits is not None:
            on_logits(logits)
        forced = len(generated) < len(o.forced_ids)
        allow_eos = not o.ignore_eos and len(generated) >= o.min_new_tokens and not o.forced_ids
        token = o.forced_ids[len(generated)] if forced else rec.choose(logits, allow_eos, eos_ids, gen)
        generated.append(token)
        summary["generated_ids"] = generated
        if on_token is not None:
            on_token(token)
        if token in eos_ids and allow_eos:
            summary["stopped_at_eos"] = True
            break
        if len(generated) >= (len(o.forced_ids) or o.max_new_tokens):
            break
        epoch = timeline.forward_epoch()
        timeline.before_decode()
        ids = torch.tensor([[token]], device=device)
        logits, seconds = rec.forward(ids, cache, position)
        position += 1
        step_index = builder.step_count
        builder.step("decode", 1, position, epoch, seconds)
        att = rec.last_attention()[-1]
        history.append(att)
        reference = timeline.first_reference
        if reference is not None and len(history) >= FIGURE5_WINDOW:
            recent = torch.stack(history[-FIGURE5_WINDOW:])
            builder.similarity(drift.window_similarity(recent, reference.mean))
        else:
            builder.similarity(math.nan)
        timeline.after_decode(step_index, att)
