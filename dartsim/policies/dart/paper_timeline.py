"""DART as the paper describes it (section 3.3), with dartsim's documented choices where the
paper is silent.

The first T generated tokens run dense and are scored (or the prompt is, with
`prompt_in_reference`); the mask and the drift reference come from that collection. Every
tau masked tokens form a window checked against the reference (Eq. 7); when the counter
reaches c0, the masks are dropped, the detection window joins a new collection, and the
model runs dense until it holds T tokens again.
"""

from __future__ import annotations

import torch

from dartsim.errors import UserError
from dartsim.policies.dart import drift
from dartsim.policies.dart.recorder import Accumulator, DartRecorder
from dartsim.policies.dart.timeline import Timeline
from dartsim.record.builder import TraceBuilder


class PaperTimeline(Timeline):
    def __init__(self, recorder: DartRecorder, builder: TraceBuilder) -> None:
        super().__init__(recorder, builder)
        self.params = recorder.params
        self.mode = recorder.settings.mode
        self.state = "collect"
        """collect (dense, scoring), masked, or dense (the `dense` mode after its reference)."""
        self.collection = recorder.new_accumulator()
        self.window = recorder.new_accumulator()
        self.need = self.params.reference_tokens
        self.counter = 0
        self.reference: drift.Reference | None = None

    def before_prefill(self) -> None:
        self.rec.acc = self.collection if self.params.prompt_in_reference else None

    def after_prefill(self, prompt_len: int, attention: torch.Tensor) -> None:
        if not self.params.prompt_in_reference:
            self.rec.acc = self.collection
            return
        self.collection.tokens += prompt_len
        # The prompt's attention outputs of its last whole windows form the reference.
        self.collection.attention.extend(attention[-self.need :].unbind(0))
        if len(self.collection.attention) < self.params.tau:
            raise UserError(
                f"the prompt has {prompt_len} tokens, fewer than tau={self.params.tau}: it "
                "cannot serve as the reference (drop --prompt-in-reference)"
            )
        self._put_mask_in_force(self.collection)

    def forward_epoch(self) -> int:
        return self.epoch if self.state == "masked" else -1

    def before_decode(self) -> None:
        if self.rec.acc is not None:
            self.rec.acc.tokens += 1

    def after_decode(self, step_index: int, attention: torch.Tensor) -> None:
        p, rec = self.params, self.rec
        if rec.acc is not None:
            rec.acc.attention.append(attention)
        if self.state == "collect":
            if len(self.collection.attention) >= self.need:
                self._put_mask_in_force(self.collection)
            return
        if self.state != "masked" or len(self.window.attention) < p.tau:
            return
        assert self.reference is not None
        result = drift.check_window(
            torch.stack(self.window.attention), self.reference, self.counter, p.delta, p.c0, p.variant
        )
        self.counter = result.counter
        self.builder.check(step_index, result)
        if result.fired and self.mode == "dart" and p.retrigger:
            self.builder.retrigger(step_index)
            self.trigger_step = step_index
            rec.clear_masks()
            self.state = "collect"
            self.collection = self.window  # the detection window joins the new reference
            self.need = p.reference_tokens
            rec.acc = self.collection
        else:
            self.window = rec.new_accumulator()
            rec.acc = self.window

    def _put_mask_in_force(self, acc: Accumulator) -> None:
        """The mask and its drift reference from the collection's last whole windows."""
        p, rec = self.params, self.rec
        apply = self.mode != "dense"
        record = rec.mask_record(acc, 0, apply)
        usable = (len(acc.attention) // p.tau) * p.tau
        self.reference = drift.build_reference(torch.stack(acc.attention[-usable:]), p.tau)
        record["reference_tokens"] = usable
        if self.first_reference is None:
            self.first_reference = self.reference
        self.counter = 0
        self.window = rec.new_accumulator()
        if not apply:
            self.state = "dense"
            rec.acc = None
            return
        self.put_in_force(record)
        self.state = "masked"
        rec.acc = self.window
