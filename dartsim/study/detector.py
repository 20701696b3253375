"""The drift-detector study: DART recorded under many detector settings on real prompts,
with the quality each setting costs measured against the dense model.

For every (setting, prompt) the model generates with DART; then one dense forward over the
same token sequence gives the dense model's next-token distribution at every generated
position. Per run: the drift-detection rate (share of checks flagged as drift),
re-triggers per 1k tokens, the dense-step fraction, top-1 agreement with the dense model
and the mean KL(dense || DART) in nats, over all generated tokens and over the masked
ones; and two tests of whether re-triggers mean drift: the share of re-triggers fired at
the first check that could fire (a detector that flags everything fires on the clock),
and the KL of windows flagged as drift over the KL of windows that were not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dartsim.policies.dart.params import DartParams
from dartsim.trace.types import Trace

KL_CHUNK = 128
"""Positions per block when comparing distributions (bounds memory to 2 x 128 x vocab)."""


@dataclass(frozen=True)
class Setting:
    """One detector configuration: a preset, the values changed from it, a record mode."""

    label: str
    preset: str = "paper"
    values: tuple[tuple[str, object], ...] = ()
    mode: str = "dart"

    def params(self) -> DartParams:
        return DartParams.preset(self.preset, **dict(self.values))


BASE: tuple[tuple[str, object], ...] = (("sparsity", 0.7),)


def _vary(
    name: str, values: tuple[object, ...], base: tuple[tuple[str, object], ...] = BASE
) -> list[Setting]:
    return [Setting(f"{name} {v}", values=(*base, (name, v))) for v in values]


GRID: tuple[Setting, ...] = (
    Setting("defaults (T 100, tau 10, c0 8, delta 0.5)", values=BASE),
    Setting("static: first mask only", values=BASE, mode="static"),
    *_vary("delta", (1.0, 2.0, 4.0)),
    *_vary("c0", (1, 2, 4, 16)),
    *_vary("reference_tokens", (50, 200)),
    *_vary("tau", (5, 20)),
    Setting("prompt_in_reference", values=(*BASE, ("prompt_in_reference", True))),
    Setting("delta 1, c0 4", values=(*BASE, ("delta", 1.0), ("c0", 4))),
    Setting("delta 2, c0 2", values=(*BASE, ("delta", 2.0), ("c0", 2))),
    Setting("delta 4, c0 2", values=(*BASE, ("delta", 4.0), ("c0", 2))),
    Setting("sparsity 0.5", values=(("sparsity", 0.5),)),
    Setting("static, sparsity 0.5", values=(("sparsity", 0.5),), mode="static"),
    Setting("published-code preset", preset="published-code"),
)
"""One-at-a-time sweeps around dartsim's defaults at the paper's 70% sparsity, the first
mask kept for the whole run as the no-detector baseline, and the authors' code's values."""

QUICK_GRID: tuple[Setting, ...] = (
    Setting("dense", values=(("tau", 5), ("reference_tokens", 10)), mode="dense"),
    Setting("dart", values=(("tau", 5), ("reference_tokens", 10), ("c0", 1), ("sparsity", 0.7))),
)
"""Two short settings for tests and smoke runs."""


@dataclass
class RunResult:
    """One (setting, prompt) run's counts and sums, added up across prompts by `merge`."""

    tokens: int = 0
    masked_tokens: int = 0
    checks: int = 0
    detected: int = 0
    retriggers: int = 0
    first_check_retriggers: int = 0
    agree: int = 0
    agree_masked: int = 0
    kl_sum: float = 0.0
    kl_masked_sum: float = 0.0
    kl_detected: list[float] = field(default_factory=list)
    kl_calm: list[float] = field(default_factory=list)

    def merge(self, other: RunResult) -> None:
        for name in ("tokens", "masked_tokens", "checks", "detected", "retriggers",
                     "first_check_retriggers", "agree", "agree_masked"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.kl_sum += other.kl_sum
        self.kl_masked_sum += other.kl_masked_sum
        self.kl_detected += other.kl_detected
        self.kl_calm += other.kl_calm

    def summary(self) -> dict[str, float]:
        """The study's columns (NaN where a share has no denominator)."""

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        def mean(values: list[float]) -> float:
            return math.fsum(values) / len(values) if values else math.nan

        return {
            "tokens": self.tokens,
            "detection_rate": ratio(self.detected, self.checks),
            "retriggers_per_1k": ratio(1000.0 * self.retriggers, self.tokens),
            "dense_fraction": ratio(self.tokens - self.masked_tokens, self.tokens),
            "first_check_share": ratio(self.first_check_retriggers, self.retriggers),
            "agreement": ratio(self.agree, self.tokens),
            "agreement_masked": ratio(self.agree_masked, self.masked_tokens),
            "kl": ratio(self.kl_sum, self.tokens),
            "kl_masked": ratio(self.kl_masked_sum, self.masked_tokens),
            "kl_lift": ratio(mean(self.kl_detected), mean(self.kl_calm)),
        }


def _dense_logits_at(loaded: Any, sequence: list[int], first: int) -> Callable[[int, int], torch.Tensor]:
    """The dense model's logits over `sequence` in one forward, read by position range."""
    ids = torch.tensor([sequence], device=next(loaded.model.parameters()).device)
    with torch.no_grad():
        logits = loaded.model(input_ids=ids, use_cache=False).logits[0]
    return lambda start, stop: logits[first + start : first + stop]


def _compare(
    dart_logits: torch.Tensor, dense_logits: torch.Tensor, banned: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position: KL(dense || DART) in nats and whether the top-1 tokens agree (EOS
    excluded from both, as it was when generating): [n, V] x2 -> [n] x2."""
    kl = torch.zeros(dart_logits.shape[0], dtype=torch.float64)
    agree = torch.zeros(dart_logits.shape[0], dtype=torch.bool)
    for start in range(0, dart_logits.shape[0], KL_CHUNK):
        a = dart_logits[start : start + KL_CHUNK].double()
        d = dense_logits[start : start + KL_CHUNK].double()
        log_a, log_d = torch.log_softmax(a, dim=-1), torch.log_softmax(d, dim=-1)
        kl[start : start + KL_CHUNK] = (log_d.exp() * (log_d - log_a)).sum(dim=-1)
        if banned:
            a[:, banned] = -math.inf
            d[:, banned] = -math.inf
        agree[start : start + KL_CHUNK] = a.argmax(dim=-1) == d.argmax(dim=-1)
    return kl, agree


def measure_run(
    loaded: Any, prompt: str, setting: Setting, tokens: int, chat_template: bool = True
) -> RunResult:
    """Record one DART run of exactly `tokens` tokens and measure it against the dense model."""
    from dartsim.policies.dart import DART, DartSettings
    from dartsim.record.loop import GenerationOptions
    from dartsim.record.session import eos_ids, record

    params = setting.params()
    recorder = DART.recorder(loaded, DartSettings(params, mode=setting.mode), None)
    options = GenerationOptions(max_new_tokens=tokens, min_new_tokens=tokens)
    captured: list[torch.Tensor] = []
    result = record(
        loaded, recorder, prompt, options, None, chat_template=chat_template,
        on_logits=lambda logits: captured.append(logits.float().cpu().clone()),
    )  # fmt: skip
    trace = result.trace
    assert trace is not None
    prompt_ids = trace.generation.prompt_ids.tolist()
    generated = trace.generation.generated_ids.tolist()
    dart_logits = torch.stack(captured)
    dense = _dense_logits_at(loaded, prompt_ids + generated[:-1], len(prompt_ids) - 1)
    kl, agree = _compare(dart_logits, dense(0, len(generated)), sorted(eos_ids(loaded)))
    # logits j came from forward j (the prefill is forward 0): masked when its step was
    masked = torch.from_numpy(trace.steps.epoch[: len(generated)] >= 0)
    out = RunResult(
        tokens=len(generated),
        masked_tokens=int(masked.sum()),
        agree=int(agree.sum()),
        agree_masked=int(agree[masked].sum()),
        kl_sum=float(kl.sum()),
        kl_masked_sum=float(kl[masked].sum()),
    )
    checks = trace.drift_checks
    out.checks = checks.count
    out.detected = int(checks.detected.sum())
    for step, detected in zip(checks.step.tolist(), checks.detected.tolist(), strict=True):
        window = kl[max(0, step - params.tau + 1) : step + 1]
        (out.kl_detected if detected else out.kl_calm).append(float(window.mean()))
    out.retriggers = trace.retriggers.count
    out.first_check_retriggers = _first_check_retriggers(trace)
    return out


def _first_check_retriggers(trace: Trace) -> int:
    """Re-triggers fired at the earliest check that could fire: every check since their
    mask came into force counted as drift (what a detector that flags everything does)."""
    epochs, checks = trace.epochs, trace.drift_checks
    count = 0
    for step in trace.retriggers.step.tolist():
        epoch = int(trace.steps.epoch[step])
        if epoch < 0:
            continue
        start = int(epochs.first_step[epoch])
        inside = (checks.step >= start) & (checks.step <= step)
        if bool(checks.detected[inside].all()):
            count += 1
    return count


def run_study(
    loaded: Any,
    prompts: dict[str, str],
    settings: tuple[Setting, ...],
    tokens: int,
    progress: Callable[[str], None] | None = None,
    done: dict[str, dict[str, Any]] | None = None,
    checkpoint: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every setting on every prompt, as payload rows. Rows in `done` (by label, from an
    earlier partial run with the same prompts and length) are reused; `checkpoint` is
    called with the rows so far after each setting, so an interrupted study loses at most
    one setting."""
    rows: list[dict[str, Any]] = []
    total = len(settings) * len(prompts)
    count = 0
    for setting in settings:
        if done is not None and setting.label in done:
            rows.append(done[setting.label])
            count += len(prompts)
            continue
        merged = RunResult()
        per_prompt = {}
        for name, prompt in prompts.items():
            count += 1
            if progress is not None:
                progress(f"[{count}/{total}] {setting.label}: {name}")
            run = measure_run(loaded, prompt, setting, tokens)
            per_prompt[name] = run
            merged.merge(run)
        rows.append(setting_row(setting, merged, per_prompt))
        if checkpoint is not None:
            checkpoint(rows)
    return rows


def _plain(summary: dict[str, float]) -> dict[str, Any]:
    """JSON-ready: NaN becomes None."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def setting_row(setting: Setting, merged: RunResult, per_prompt: dict[str, RunResult]) -> dict[str, Any]:
    """One setting's results as plain data."""
    params = setting.params()
    return {
        "label": setting.label,
        "preset": setting.preset,
        "values": {k: v for k, v in setting.values},
        "mode": setting.mode,
        "sparsity": params.sparsity,
        "tau": params.tau,
        "summary": _plain(merged.summary()),
        "per_prompt": {name: _plain(run.summary()) for name, run in per_prompt.items()},
    }


def study_payload(
    rows: list[dict[str, Any]], model: str, tokens: int, prompts: list[str], complete: bool = True
) -> dict[str, Any]:
    """The study's results as plain data (what `--json` writes and the report renders),
    each DART setting judged against the static run at its sparsity."""
    from dartsim.study.criteria import criteria_met

    static_kl = {r["sparsity"]: r["summary"]["kl"] for r in rows if r["mode"] == "static"}
    judged = []
    for row in rows:
        verdict = (
            criteria_met(row["summary"], static_kl.get(row["sparsity"])) if row["mode"] == "dart" else []
        )
        judged.append({**row, "criteria": verdict})
    return {
        "study": "detector",
        "complete": complete,
        "model": model,
        "tokens_per_run": tokens,
        "prompts": list(prompts),
        "rows": judged,
    }
