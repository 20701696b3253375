"""The policy comparison: every policy recorded on the real model over the shipped
evaluation text (teacher-forced), measured against the dense model for quality, and its
traces replayed on target models and hardware for cost.

Each (policy, setting) is run on the same evaluation items. Quality pools every
position of every item (policies/quality.py). Cost replays each item's trace on every
(model, hardware) target, retargeted by depth, at the smallest tensor-parallel degree
that fits, and averages over items: DRAM bytes per generated token, time per output
token (decode steps), and the speedup over the dense trace of the same item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dartsim.trace.types import Trace

if TYPE_CHECKING:
    import torch

    from dartsim.policies._calibration import CalibrationStats
    from dartsim.record.model import LoadedModel
    from dartsim.study.quality import EvalItem

DEFAULT_SPARSITIES = (0.3, 0.5, 0.7)
DEFAULT_TARGETS = (
    ("llama-3.1-8b", "l40s"),
    ("llama-3.1-8b", "h100-sxm"),
    ("llama-3.1-70b", "l40s"),
    ("llama-3.1-70b", "h100-sxm"),
)
DART_OPTIONS = {"preset": "paper", "prompt_in_reference": True}
"""DART builds its first mask from the prompt here, as the other prompt-derived policies
do; with dartsim's recording default (the first 100 generated tokens run dense) most of a
128-token evaluation would be dense."""


@dataclass(frozen=True)
class Setting:
    label: str
    policy: str
    options: dict[str, Any] = field(default_factory=dict)
    recording: dict[str, Any] = field(default_factory=dict)
    """Options for the recording only (not part of the setting's identity in reports)."""
    baseline: bool = False
    """The run every other setting is compared with (quality and speedup)."""

    @property
    def sparsity(self) -> float:
        return float(self.options.get("sparsity", 0.0))


def settings(sparsities: Sequence[float]) -> list[Setting]:
    """dense, 2:4, and every other policy at each sparsity."""
    out = [Setting("dense", "dense", baseline=True)]
    for s in sparsities:
        pct = f"{s:.0%}"
        out += [
            Setting(f"static {pct}", "static", {"sparsity": s}),
            Setting(f"dart {pct}", "dart", {"sparsity": s}, DART_OPTIONS),
            Setting(f"dejavu {pct}", "dejavu", {"sparsity": s}),
            Setting(f"dejavu-oracle {pct}", "dejavu", {"sparsity": s, "oracle": True}),
            Setting(f"wanda {pct}", "wanda", {"sparsity": s}),
            Setting(f"dsgp {pct}", "dsgp", {"sparsity": s}),
            Setting(f"kgds {pct}", "kgds", {"sparsity": s}),
        ]
    out.append(Setting("2:4", "2:4"))
    return out


def record_item(loaded: LoadedModel, recorder: Any, item: EvalItem) -> tuple[Trace, torch.Tensor]:
    """(trace, logits [C, V]) of one setting (prepared as `recorder`) teacher-forced on one item."""
    import torch

    from dartsim.record.loop import GenerationOptions
    from dartsim.record.session import record

    logits: list[torch.Tensor] = []
    collect = lambda x: logits.append(x.detach().double().cpu())  # noqa: E731
    forced = tuple(item.continuation_ids)
    options = GenerationOptions(max_new_tokens=len(forced), forced_ids=forced)
    result = record(loaded, recorder, "", options, None, False, on_logits=collect, prompt_ids=item.prompt_ids)
    assert result.trace is not None
    return result.trace, torch.stack(logits)


def kept_fractions(trace: Trace) -> dict[str, float]:
    """Decode-step averages: FFN neurons kept, decoder weights kept, attention heads kept."""
    decode = trace.steps.decode
    epochs = trace.steps.epoch[decode].astype(np.int64)
    m = trace.width
    dense = np.ones(1, dtype=np.float64)  # appended: epoch -1 (dense) indexes it
    per_epoch = np.concatenate([trace.epochs.kept.astype(np.float64).mean(axis=-1) / m, dense])
    ffn = per_epoch[np.where(epochs >= 0, epochs, per_epoch.size - 1)]
    policy = trace.policy
    heads = policy.head_masks.astype(np.float64).mean()
    head_share = np.where(epochs >= 0, heads, 1.0)
    return {
        "ffn": float(ffn.mean()) if ffn.size else 1.0,
        "weights": float(policy.weight_density.mean()),
        "heads": float(head_share.mean()) if head_share.size else 1.0,
    }


def replay_cost(traces: Sequence[Trace], model: str, hw_name: str) -> dict[str, Any]:
    """Mean over items of bytes per generated token, TPOT and (where the hardware has an
    energy section) joules per generated token, and the tensor-parallel degree."""
    from dartsim.replay.job import ReplayJob, run_job
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec

    spec, hw = load_model_spec(model), load_hardware_spec(hw_name)
    per_token: list[float] = []
    tpot: list[float] = []
    tps: list[int] = []
    joules: list[float] = []
    for trace in traces:
        result = run_job(ReplayJob((trace,), spec, hw, tp="auto"))
        run = result.run
        per_token.append(run.totals.bytes / run.tokens)
        tpot.append(run.tpot_s or 0.0)
        tps.append(result.setup.tp)
        if run.power.get("energy_per_token_j") is not None:
            joules.append(float(run.power["energy_per_token_j"]))
    n = len(traces)
    cost: dict[str, Any] = {"bytes_per_token": sum(per_token) / n, "tpot_s": sum(tpot) / n, "tp": max(tps)}
    cost["energy_per_token_j"] = sum(joules) / n if len(joules) == n else None
    return cost


def run_policies_study(
    loaded: LoadedModel,
    chosen: Sequence[Setting],
    items: Sequence[EvalItem],
    targets: Sequence[tuple[str, str]],
    say: Callable[[str], None],
    stats: CalibrationStats | None = None,
) -> dict[str, Any]:
    """Every setting on every item: the payload reports/policies.md is rendered from."""
    import torch

    from dartsim.policies import get_policy
    from dartsim.policies._calibration import calibrate
    from dartsim.study.quality import quality

    if stats is None and any(get_policy(s.policy).needs_calibration for s in chosen):
        say("calibrating on the shipped calibration text")
        stats = calibrate(loaded)
    targets_ids = [torch.tensor(i.continuation_ids) for i in items]
    rows: list[dict[str, Any]] = []
    dense_logits: list[torch.Tensor] = []
    dense_cost: dict[str, dict[str, float]] = {}
    for n, setting in enumerate(chosen):
        say(f"[{n + 1}/{len(chosen)}] {setting.label}")
        policy = get_policy(setting.policy)
        recorder = policy.recorder(loaded, policy.settings({**setting.options, **setting.recording}), stats)
        try:
            recorded = [record_item(loaded, recorder, item) for item in items]
        finally:
            recorder.close()
        traces = [t for t, _ in recorded]
        logits = [lg for _, lg in recorded]
        if setting.baseline:
            dense_logits = logits
        if not dense_logits:
            raise ValueError("the baseline (dense) setting must come first")
        q = quality(dense_logits, logits, targets_ids)
        fractions = [kept_fractions(t) for t in traces]
        kept = {k: sum(f[k] for f in fractions) / len(fractions) for k in fractions[0]}
        costs = {}
        for model, hw in targets:
            key = f"{model} @ {hw}"
            cost = replay_cost(traces, model, hw)
            if setting.baseline:
                dense_cost[key] = cost
            cost["speedup"] = dense_cost[key]["tpot_s"] / cost["tpot_s"]
            costs[key] = cost
        categories = sorted({str(t.policy.params.get("category", "")) for t in traces} - {""})
        rows.append(
            {
                "label": setting.label,
                "policy": setting.policy,
                "options": dict(setting.options),
                "kept": kept,
                "quality": {
                    "perplexity": q.perplexity,
                    "top1_agreement": q.top1_agreement,
                    "mean_kl": q.mean_kl,
                    "positions": q.positions,
                },
                "costs": costs,
                "categories": categories,
            }
        )
    return {
        "study": "policies",
        "model": loaded.spec.name,
        "items": [{"category": i.category, "topic": i.topic} for i in items],
        "prompt_tokens": len(items[0].prompt_ids) if items else 0,
        "continuation_tokens": len(items[0].continuation_ids) if items else 0,
        "calibration_tokens": stats.tokens if stats is not None else 0,
        "targets": [f"{m} @ {h}" for m, h in targets],
        "rows": rows,
    }
