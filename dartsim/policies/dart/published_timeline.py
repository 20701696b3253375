"""DART as the authors' published code runs it (seeder-research/DART at 19c4a57, manual
mode, `all:auto` counts, `--knowledge_drift`), forward by forward.

With M = masking_step and the prefill as forward 0 (the code's `currIteration`):

- Forwards 0..M-1 run dense and are scored: every prompt position, then one generated
  token per forward (neuronDefuser.py:240-298). The masks are built at the start of
  forward M from those P + M - 1 positions and are in force from forward M on (321-409).
- The drift reference is built at the end of forward M's last-layer attention from every
  position cached since the collection began, P + M of them (733-738, 754-866): windows of
  tau from the first position, mean over all, unbiased sigma, threshold mu - max(0.1
  sigma, 0.1).
- Checks run inside the last layer's attention hook every tau forwards (739-752) on the
  tau newest positions; a strict `<` detection; fire at counter >= 1 (952).
- A fire resets the state inside that hook (169-193): the last layer's FFN of the same
  forward runs dense and starts the new collection with that forward's token, the window's
  positions are dropped, forwards f+1..f+M-1 run dense and are scored, the masks come back
  at forward f+M, and the new reference holds the M positions of forwards f+1..f+M.

The trace marks the trigger forward with the epoch it started under, although its last
layer ran dense (a one-layer, one-token difference in the replayed cost).
"""

from __future__ import annotations

import torch

from dartsim.policies.dart import drift
from dartsim.policies.dart.recorder import DartRecorder
from dartsim.policies.dart.timeline import Timeline
from dartsim.record.builder import TraceBuilder


class PublishedTimeline(Timeline):
    def __init__(self, recorder: DartRecorder, builder: TraceBuilder) -> None:
        super().__init__(recorder, builder)
        self.params = recorder.params
        self.mode = recorder.settings.mode
        self.iteration = 0
        """The code's `currIteration` of the next forward: forwards since the collection began."""
        self.collection = recorder.new_accumulator()
        self.cache: list[torch.Tensor] = []
        """Last-layer attention outputs since the collection began (`post_attn_oproj_cache`)."""
        self.window: list[torch.Tensor] = []
        self.masked = False
        self.reference: drift.Reference | None = None
        self.counter = 0
        self.masks_built = 0
        self.pending: drift.DriftCheck | None = None
        self.fired = False
        recorder.on_last_attention = self._on_last_attention

    def before_prefill(self) -> None:
        self.rec.acc = self.collection

    def after_prefill(self, prompt_len: int, attention: torch.Tensor) -> None:
        self.cache.extend(attention.unbind(0))
        self._collected()

    def forward_epoch(self) -> int:
        return self.epoch if self.masked else -1

    def before_decode(self) -> None:
        pass

    def _on_last_attention(self, attention: torch.Tensor) -> None:
        """Inside the forward, after the last layer's attention and before its FFN."""
        p = self.params
        if self.reference is None or self.iteration <= p.masking_step or self.mode == "dense":
            return
        self.window.append(attention[-1])
        if len(self.window) < p.tau:
            return
        result = drift.check_window(
            torch.stack(self.window), self.reference, self.counter, p.delta, p.c0, p.variant
        )
        self.window = []
        self.pending = result
        if result.fired and self.mode == "dart" and p.retrigger:
            self.fired = True
            self.counter = 0
            self.collection = self.rec.new_accumulator()
            self.rec.acc = self.collection
            self.rec.layer_dense(self.rec.layers - 1)
        else:
            self.counter = result.counter

    def after_decode(self, step_index: int, attention: torch.Tensor) -> None:
        p = self.params
        if self.pending is not None:
            self.builder.check(step_index, self.pending)
            self.pending = None
        if self.fired:
            self.fired = False
            self.builder.retrigger(step_index)
            self.trigger_step = step_index
            self.rec.clear_masks()
            self.masked = False
            self.reference = None
            self.cache = []
            self.window = []
            self.iteration = 0  # the trigger forward counts as the collection's first
            self._collected()
            return
        if self.iteration < p.masking_step:
            self.cache.append(attention)
            self._collected()
        elif self.iteration == p.masking_step:
            self.cache.append(attention)
            self.reference = drift.build_reference_published(torch.stack(self.cache), p.tau)
            if self.first_reference is None:
                self.first_reference = self.reference
            self.cache = []
            self.window = []
            self.iteration += 1
        else:
            self.iteration += 1

    def _collected(self) -> None:
        """A scored forward has ended; after forward M-1 the masks are built."""
        self.iteration += 1
        if self.iteration == self.params.masking_step:
            self._build_masks()

    def _build_masks(self) -> None:
        rec = self.rec
        apply = self.mode != "dense"
        record = rec.mask_record(self.collection, self.masks_built, apply)
        self.masks_built += 1
        rec.acc = None
        record["reference_tokens"] = len(self.cache) + 1  # forward M's position joins it
        if not apply:
            return
        self.put_in_force(record)
        self.masked = True
