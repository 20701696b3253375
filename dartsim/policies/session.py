"""One policy recording from prompt to trace file, keeping what was recorded if the run
is interrupted or fails (as DART's recordings do: dart/session.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dartsim.dart.recorder import RecordOptions
from dartsim.dart.session import (
    RecordResult,
    check_context,
    encode_prompt,
    eos_ids,
    finish,
    generation_section,
    guarded,
    token_bar,
)
from dartsim.dart.trace_builder import TraceBuilder, trace_header
from dartsim.policies.runner import PolicyRunner


def record_policy(
    runner: PolicyRunner,
    prompt: str,
    max_new_tokens: int,
    out: Path | None,
    chat_template: bool = True,
    progress: bool = False,
    prompt_ids: list[int] | None = None,
    forced_ids: list[int] | None = None,
    on_logits: Callable[[torch.Tensor], None] | None = None,
) -> RecordResult:
    """Record one run of `runner`'s policy; `prompt_ids` (raw ids) overrides `prompt`."""
    loaded = runner.loaded
    ids = prompt_ids if prompt_ids is not None else encode_prompt(loaded, prompt, chat_template)
    new_tokens = len(forced_ids) if forced_ids is not None else max_new_tokens
    check_context(loaded, len(ids), new_tokens, f"{new_tokens} new tokens")
    builder = TraceBuilder()
    summary: dict[str, Any] = {"generated_ids": [], "stopped_at_eos": False}
    bar = token_bar(new_tokens, f"recording {runner.config.name}") if progress else None

    def generate() -> None:
        runner.run(
            ids,
            builder,
            summary,
            max_new_tokens,
            eos_ids(loaded),
            forced_ids,
            on_logits,
            (lambda _t: bar.update(1)) if bar else None,
        )

    status, failure, seconds = guarded(generate, lambda: bar.close() if bar is not None else None)
    trace = None
    if builder.step_count > 0:
        trace = assemble(runner, builder, prompt, ids, summary, max_new_tokens, chat_template, status)
    return finish(trace, out, status, failure, seconds, summary)


def assemble(
    runner: PolicyRunner,
    builder: TraceBuilder,
    prompt: str,
    prompt_ids: list[int],
    summary: dict[str, Any],
    max_new_tokens: int,
    chat_template: bool,
    status: str,
) -> dict[str, Any]:
    loaded = runner.loaded
    trace = trace_header(loaded, 0)
    trace.update(complete=status == "complete", status=status, policy=runner.policy_section())
    settings = RecordOptions(max_new_tokens=max(max_new_tokens, 1))
    trace["generation"] = generation_section(loaded, prompt, prompt_ids, summary, chat_template, settings)
    trace.update(builder.tensors(loaded.spec.num_layers, loaded.spec.intermediate_size))
    return trace
