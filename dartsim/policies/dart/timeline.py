"""The interface of DART's state machines, one per variant.

What differs between variants is when scores are collected, when masks come into force,
how the drift reference is built and what a re-trigger does. Those decisions live in a
`Timeline`: paper_timeline.py (the paper) and published_timeline.py (the authors' code);
controller.py drives one inside record/loop.py's token loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch

from dartsim.policies.dart import drift
from dartsim.record.builder import TraceBuilder

if TYPE_CHECKING:
    from dartsim.policies.dart.recorder import DartRecorder


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
