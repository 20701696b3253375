"""One recording from prompt to trace file, for any policy: tokenise, run the one token
loop under the policy's controller, assemble and save the trace, and keep everything
recorded so far if the run is interrupted or fails."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dartsim.errors import UserError
from dartsim.record.builder import NullTraceBuilder, TraceBuilder, trace_header
from dartsim.record.loop import Controller, GenerationOptions, generate
from dartsim.record.model import LoadedModel
from dartsim.trace.io import save_trace
from dartsim.trace.types import Trace


class ControllerFactory(Protocol):
    """A policy prepared on a model (policies/_registry.py PolicyRecorder)."""

    def controller(self, builder: Any) -> Controller: ...

    def label(self) -> str: ...


@dataclass
class RecordResult:
    trace: Trace | None
    """The recorded trace (None when tracing was off or no step ran)."""
    status: str
    bytes_written: int
    seconds: float
    generated: int


UTF8_MAX_BYTES = 4
"""Most bytes one character takes in UTF-8."""


def longest_token_chars(tokenizer: Any) -> int:
    """The longest token of the vocabulary, in characters of its stored form (every Hugging
    Face tokenizer dartsim loads lists its vocabulary)."""
    return max(len(str(t)) for t in tokenizer.get_vocab())


def check_prompt_size(loaded: LoadedModel, prompt: str) -> None:
    """Refuse, before tokenising, a prompt too long for the context whatever its tokens: no
    token covers more than the vocabulary's longest token, so a prompt longer than the
    context times that (in UTF-8 bytes) cannot fit. Tokenising a 50 MB prompt whole took
    gigabytes and minutes before the context check said no."""
    longest = longest_token_chars(loaded.tokenizer)
    limit = loaded.spec.max_position_embeddings
    bound = limit * longest * UTF8_MAX_BYTES
    size = len(prompt.encode("utf-8", errors="surrogatepass"))
    if size > bound:
        raise UserError(
            f"the prompt holds {size} bytes: more than the model's context of {limit} positions can hold "
            f"(at most {longest} characters per token, so {bound} bytes at most); shorten it"
        )


def encode_prompt(loaded: LoadedModel, prompt: str, chat_template: bool) -> list[int]:
    check_prompt_size(loaded, prompt)
    tokenizer = loaded.tokenizer
    if chat_template and getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True
        )
        ids = list(encoded["input_ids"])
    else:
        ids = list(tokenizer(prompt)["input_ids"])
    if not ids:
        raise UserError("the prompt encodes to no token")
    return [int(i) for i in ids]


def eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    for source in (
        loaded.tokenizer.eos_token_id,
        getattr(loaded.model.generation_config, "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return ids


def record(
    loaded: LoadedModel,
    recorder: ControllerFactory,
    prompt: str,
    options: GenerationOptions,
    out: Path | None,
    chat_template: bool = True,
    progress: bool = False,
    trace_enabled: bool = True,
    on_logits: Callable[[Any], None] | None = None,
    prompt_ids: list[int] | None = None,
) -> RecordResult:
    """Record one run of `recorder`'s policy; `prompt_ids` (raw ids) overrides `prompt`.
    With `trace_enabled=False` nothing is kept (the cost of tracing itself).

    A KeyboardInterrupt or an exception mid-generation still writes a valid trace of the
    completed steps, marked incomplete, before the exception propagates.
    """
    if prompt_ids is None:
        prompt_ids = encode_prompt(loaded, prompt, chat_template)
    new_tokens = options.new_tokens
    asked = f"{new_tokens} new tokens" if options.forced_ids else f"--max-new-tokens {new_tokens}"
    check_context(loaded, len(prompt_ids), new_tokens, asked)
    builder = TraceBuilder() if trace_enabled else NullTraceBuilder()
    controller = recorder.controller(builder)
    summary: dict[str, Any] = {"generated_ids": [], "stopped_at_eos": False}
    bar = token_bar(new_tokens, f"recording {recorder.label()}") if progress else None

    def run() -> None:
        generate(
            loaded,
            controller,
            prompt_ids,
            builder,
            options,
            eos_ids(loaded),
            summary,
            on_token=(lambda _t: bar.update(1)) if bar else None,
            on_logits=on_logits,
        )

    def cleanup() -> None:
        controller.close()
        if bar is not None:
            bar.close()

    status, failure, seconds = guarded(run, cleanup)
    trace = None
    if trace_enabled and builder.step_count > 0:
        trace = assemble(
            loaded, controller, options, builder, prompt, prompt_ids, summary, chat_template, status
        )
    return finish(trace, out, status, failure, seconds, summary)


def check_context(loaded: LoadedModel, prompt_len: int, new_tokens: int, asked: str) -> None:
    """A prompt plus the tokens to generate must fit the model's context."""
    limit = loaded.spec.max_position_embeddings
    if prompt_len + new_tokens > limit:
        raise UserError(
            f"the prompt ({prompt_len} tokens) plus {asked} exceeds the model's context of {limit} positions"
        )


def token_bar(total: int, desc: str) -> Any:
    """A progress bar on stderr counting generated tokens."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="tok", file=sys.stderr)


def finish(
    trace: dict[str, Any] | None,
    out: Path | None,
    status: str,
    failure: BaseException | None,
    seconds: float,
    summary: dict[str, Any],
) -> RecordResult:
    """Save what was recorded (also after an interrupt or an error), then re-raise the
    failure if there was one."""
    written = save_trace(trace, out) if trace is not None and out is not None else 0
    if failure is not None:
        raise failure
    typed = Trace.from_dict(trace) if trace is not None else None
    return RecordResult(typed, status, written, seconds, len(summary["generated_ids"]))


def assemble(
    loaded: LoadedModel,
    controller: Controller,
    options: GenerationOptions,
    builder: TraceBuilder,
    prompt: str,
    prompt_ids: list[int],
    summary: dict[str, Any],
    chat_template: bool,
    status: str,
) -> dict[str, Any]:
    """The trace's mapping: header, the policy's sections, generation, and the tensors."""
    trace = trace_header(loaded, options.seed)
    trace.update(complete=status == "complete", status=status, **controller.trace_sections())
    trace["generation"] = generation_section(loaded, prompt, prompt_ids, summary, chat_template, options)
    trace.update(builder.tensors(loaded.spec.num_layers, loaded.spec.intermediate_size))
    return trace


def guarded(
    generate: Callable[[], None], cleanup: Callable[[], None]
) -> tuple[str, BaseException | None, float]:
    """Run a recording's token loop: (status, the exception to re-raise once the partial
    trace is saved, seconds). An interrupt or an error ends the loop but keeps what was
    recorded; a user error propagates at once. `cleanup` always runs."""
    import time

    status = "complete"
    failure: BaseException | None = None
    start = time.perf_counter()
    try:
        generate()
    except KeyboardInterrupt as exc:
        status, failure = "interrupted", exc
    except UserError:
        raise
    except Exception as exc:
        status, failure = f"error: {type(exc).__name__}: {exc}", exc
    finally:
        cleanup()
    return status, failure, time.perf_counter() - start


def generation_section(
    loaded: LoadedModel,
    prompt: str,
    prompt_ids: list[int],
    summary: dict[str, Any],
    chat_template: bool,
    options: GenerationOptions,
) -> dict[str, Any]:
    """The trace's `generation` section: prompt, generated tokens and text, and the
    generation settings."""
    import torch

    generated = list(summary["generated_ids"])
    return {
        "prompt": prompt,
        "prompt_len": len(prompt_ids),
        "generated_len": len(generated),
        "stopped_at_eos": bool(summary["stopped_at_eos"]),
        "max_new_tokens": options.max_new_tokens,
        "min_new_tokens": options.min_new_tokens,
        "ignore_eos": options.ignore_eos,
        "temperature": options.temperature,
        "chat_template": chat_template,
        "text": loaded.tokenizer.decode(generated, skip_special_tokens=True),
        "prompt_ids": torch.tensor(prompt_ids, dtype=torch.int64),
        "generated_ids": torch.tensor(generated, dtype=torch.int64),
    }
