"""The one token loop every recording runs, whatever the policy: a prefill, then one
forward per generated token, each timed and entered in the trace builder.

What differs between policies is what happens around each forward: collecting
activations, building masks and putting them in force, checking for drift. A policy says
it through a `Controller` (policies/<name>.py, policies/dart/); the loop calls it in this
order:

    before_prefill, [prefill forward], after_prefill,
    per decode token: decode_epoch, [forward], after_forward, [step entered], after_decode

so that after an exception or an interrupt the builder and `summary` hold every step that
completed. Token choice (greedy, sampled, or teacher-forced) is the loop's, so every policy
generates the same way.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dartsim.errors import UserError

if TYPE_CHECKING:
    import torch

    from dartsim.record.builder import TraceBuilder
    from dartsim.record.model import LoadedModel


@dataclass(frozen=True)
class GenerationOptions:
    """How tokens are generated: how many, when end-of-sequence may stop the run, greedy or
    sampled, or teacher-forced."""

    max_new_tokens: int = 500
    min_new_tokens: int = 0
    ignore_eos: bool = False
    temperature: float = 0.0
    seed: int = 0
    forced_ids: tuple[int, ...] = ()
    """Tokens fed instead of chosen (teacher forcing, for quality measurements): the run
    then generates exactly these and never stops at end-of-sequence."""

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise UserError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise UserError(
                f"--min-new-tokens must lie in [0, {self.max_new_tokens}], got {self.min_new_tokens}"
            )
        if self.temperature < 0:
            raise UserError(f"--temperature must be zero (greedy) or positive, got {self.temperature}")

    @property
    def new_tokens(self) -> int:
        """Tokens the run generates at most."""
        return len(self.forced_ids) or self.max_new_tokens


class Controller(ABC):
    """One recording's policy-specific work around the loop's forwards (see the module
    docstring for the order of calls)."""

    @abstractmethod
    def before_prefill(self) -> None:
        """Set up collection for the prompt's forward."""

    @abstractmethod
    def after_prefill(self, prompt_ids: list[int]) -> None:
        """The prompt has run (its step is entered): prompt-derived masks come into force."""

    @abstractmethod
    def decode_epoch(self) -> int:
        """Prepare the next decode forward; the mask epoch it runs under (-1: FFN dense)."""

    def after_forward(self, step_index: int) -> None:
        """The forward of step `step_index` ran, before the step is entered (a per-token
        mask chosen inside the forward is recorded here). Default: nothing."""
        return None

    @abstractmethod
    def after_decode(self, step_index: int) -> None:
        """Step `step_index` is entered: check, re-trigger, bookkeeping."""

    def close(self) -> None:
        """Remove hooks; the model is as it was before the controller was made."""
        return None

    @abstractmethod
    def trace_sections(self) -> dict[str, Any]:
        """The trace sections this policy owns (`policy`, and DART's `dart`)."""


def sync(device: str) -> None:
    """Wait for a CUDA device (timing must not end before its kernels do)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed_forward(
    loaded: LoadedModel, ids: torch.Tensor, cache: Any, position: int
) -> tuple[torch.Tensor, float]:
    """One timed forward from `position`: the last position's logits and the seconds."""
    import torch

    model = loaded.model
    device = ids.device.type
    positions = torch.arange(position, position + ids.shape[1], device=ids.device).unsqueeze(0)
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, position_ids=positions)
    sync(device)
    return out.logits[0, -1].detach(), time.perf_counter() - start


def choose(
    logits: torch.Tensor, allow_eos: bool, eos: set[int], temperature: float, gen: torch.Generator
) -> int:
    """The next token: greedy at temperature 0, otherwise sampled with `gen`."""
    import torch

    scores = logits.double().cpu()
    if not allow_eos and eos:
        scores[list(eos)] = -math.inf
    if temperature == 0:
        return int(torch.argmax(scores))
    probs = torch.softmax(scores / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(
    loaded: LoadedModel,
    controller: Controller,
    prompt_ids: list[int],
    builder: TraceBuilder,
    options: GenerationOptions,
    eos_ids: set[int],
    summary: dict[str, Any],
    on_token: Callable[[int], None] | None = None,
    on_logits: Callable[[torch.Tensor], None] | None = None,
) -> None:
    """Generate up to `options.new_tokens` after the prompt, filling `builder` and
    `summary` (generated ids, whether EOS stopped it) as it goes. `on_logits` sees the
    logits each forward produced (the prefill's first), before the token is chosen."""
    import torch
    from transformers.cache_utils import DynamicCache

    o = options
    gen = torch.Generator().manual_seed(o.seed)
    device = next(loaded.model.parameters()).device
    cache = DynamicCache()
    summary.update(generated_ids=[], stopped_at_eos=False)

    controller.before_prefill()
    logits, seconds = timed_forward(loaded, torch.tensor([prompt_ids], device=device), cache, 0)
    position = len(prompt_ids)
    builder.step("prefill", len(prompt_ids), position, -1, seconds)
    controller.after_prefill(prompt_ids)

    generated: list[int] = []
    while True:
        if on_logits is not None:
            on_logits(logits)
        forced = len(generated) < len(o.forced_ids)
        allow_eos = not o.ignore_eos and len(generated) >= o.min_new_tokens and not o.forced_ids
        token = (
            o.forced_ids[len(generated)] if forced else choose(logits, allow_eos, eos_ids, o.temperature, gen)
        )
        generated.append(token)
        summary["generated_ids"] = generated
        if on_token is not None:
            on_token(token)
        if token in eos_ids and allow_eos:
            summary["stopped_at_eos"] = True
            break
        if len(generated) >= o.new_tokens:
            break
        epoch = controller.decode_epoch()
        logits, seconds = timed_forward(loaded, torch.tensor([[token]], device=device), cache, position)
        position += 1
        step_index = builder.step_count
        controller.after_forward(step_index)
        builder.step("decode", 1, position, epoch, seconds)
        controller.after_decode(step_index)
