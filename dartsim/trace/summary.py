"""A trace's summary: what `dartsim trace info` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dartsim.text import printable
from dartsim.trace.types import Trace
from dartsim.units import MS_PER_S


def steps_per_epoch(trace: Trace) -> np.ndarray:
    """How many forward steps ran under each mask epoch: [E]."""
    epoch_of_step = trace.steps.epoch.astype(np.int64)
    used = epoch_of_step[epoch_of_step >= 0]
    return np.bincount(used, minlength=trace.epochs.count)


def mean_keep_ratio_per_layer(trace: Trace) -> list[float] | None:
    """Keep ratio per layer averaged over the masked steps (None if no step was masked)."""
    weights = steps_per_epoch(trace).astype(np.float64)
    if weights.sum() == 0:
        return None
    ratios = trace.epochs.keep_ratio
    return ((weights[:, None] * ratios).sum(axis=0) / weights.sum()).tolist()


def drift_detection_rate(trace: Trace) -> float | None:
    """Fraction of drift checks that counted as drift (None without checks). A detector
    that flags nearly every masked window measures the clock, not drift."""
    detected = trace.drift_checks.detected
    return float(detected.astype(np.float64).mean()) if detected.size else None


def dense_step_fraction(trace: Trace) -> float:
    """Fraction of forward steps that ran the FFN dense (collection windows included)."""
    epochs = trace.steps.epoch
    return float((epochs == -1).astype(np.float64).mean()) if epochs.size else 0.0


def summarize(trace: Trace, path: Path) -> dict[str, Any]:
    steps = trace.steps
    gen = trace.generation
    model = trace.model
    context = steps.context_len
    retrigger_steps = trace.retriggers.step.astype(np.int64)
    decode = steps.decode
    per_layer = mean_keep_ratio_per_layer(trace)
    policy = trace.policy
    dart = trace.dart or {}
    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "status": printable(trace.status),
        "complete": trace.complete,
        "synthetic": trace.synthetic,
        "model": printable(model.name),
        "model_source": printable(model.source),
        "random_weights": model.random_weights,
        "layers": model.num_layers,
        "ffn_width": model.intermediate_size,
        "policy": printable(policy.name),
        "policy_params": {
            printable(k): v if not isinstance(v, str) else printable(v) for k, v in policy.params.items()
        },
        "weight_format": printable(policy.weight_format),
        "weights_kept": float(policy.weight_density.mean()),
        "heads_kept": float(policy.head_masks.astype(np.float64).mean()),
        "variant": printable(dart["variant"]) if "variant" in dart else None,
        "mode": printable(dart["mode"]) if "mode" in dart else None,
        "sparsity": trace.sparsity,
        "prompt_tokens": gen.prompt_len,
        "generated_tokens": gen.generated_len,
        "stopped_at_eos": gen.stopped_at_eos,
        "steps": steps.count,
        "dense_steps": int((steps.epoch == -1).sum()),
        "mask_epochs": trace.epochs.count,
        "drift_checks": trace.drift_checks.count,
        "drift_detection_rate": drift_detection_rate(trace),
        "dense_step_fraction": dense_step_fraction(trace),
        "retriggers": int(retrigger_steps.size),
        "retrigger_positions": [int(context[s]) for s in retrigger_steps],
        "retriggers_per_1k_tokens": 1000.0 * retrigger_steps.size / max(gen.generated_len, 1),
        "mean_keep_ratio": None if per_layer is None else sum(per_layer) / len(per_layer),
        "mean_keep_ratio_per_layer": per_layer,
        "recorded_time_s": float(steps.time_s.sum()),
        "mean_decode_step_s": float(steps.time_s[decode].mean()) if bool(decode.any()) else None,
        "mask_build_time_s": float(trace.epochs.build_time_s.sum()),
    }


def _policy_line(info: dict[str, Any]) -> str:
    params = ", ".join(f"{k} {v}" for k, v in info["policy_params"].items() if k != "mode")
    weights = f"weights {info['weight_format']} ({info['weights_kept']:.0%} kept)"
    return (
        f"{info['policy']}"
        + (f" ({params})" if params else "")
        + f"; {weights}, heads {info['heads_kept']:.0%} kept"
    )


def _dart_line(info: dict[str, Any]) -> str:
    return f"variant {info['variant']}, mode {info['mode']}, sparsity {info['sparsity']}"


def render_summary(info: dict[str, Any]) -> str:
    lines = [
        f"trace            {info['file']} ({info['size_bytes']} bytes)",
        f"status           {info['status']}" + ("  [SYNTHETIC]" if info["synthetic"] else ""),
        f"model            {info['model']} ({info['layers']} layers, FFN {info['ffn_width']})"
        + ("  [RANDOM WEIGHTS]" if info["random_weights"] and not info["synthetic"] else ""),
        f"source           {info['model_source']}",
        f"policy           {_policy_line(info)}",
        *([f"DART             {_dart_line(info)}"] if info["variant"] is not None else []),
        f"tokens           {info['prompt_tokens']} prompt + {info['generated_tokens']} generated"
        + (" (stopped at EOS)" if info["stopped_at_eos"] else ""),
        f"steps            {info['steps']} ({info['dense_steps']} with the FFN dense: "
        f"dense-step fraction {info['dense_step_fraction']:.2f})",
        f"mask epochs      {info['mask_epochs']}"
        + (
            "  (the run ended before its first mask: no sparsity recorded)" if not info["mask_epochs"] else ""
        ),
        f"drift checks     {info['drift_checks']}"
        + (
            f" (drift detection rate {info['drift_detection_rate']:.2f})"
            if info["drift_detection_rate"] is not None
            else ""
        ),
        f"re-triggers      {info['retriggers']} ({info['retriggers_per_1k_tokens']:.1f} per 1k tokens)"
        + (f" at positions {', '.join(map(str, info['retrigger_positions']))}" if info["retriggers"] else ""),
        "recorded time    none: a synthetic trace, no forward ran"
        if info["synthetic"]
        else f"recorded time    {info['recorded_time_s']:.3f} s of forward steps, "
        f"{info['mask_build_time_s'] * MS_PER_S:.2f} ms building masks",
    ]
    if info["mean_decode_step_s"] is not None and not info["synthetic"]:
        lines.append(f"decode step      {info['mean_decode_step_s'] * MS_PER_S:.2f} ms mean")
    per_layer = info["mean_keep_ratio_per_layer"]
    if per_layer is None:
        lines.append("keep ratio       no masked step")
    else:
        lines.append(f"keep ratio       {info['mean_keep_ratio']:.3f} mean over layers; per layer:")
        for start in range(0, len(per_layer), 10):
            chunk = per_layer[start : start + 10]
            cells = " ".join(f"{v:.2f}" for v in chunk)
            lines.append(f"  layers {start:>3}-{start + len(chunk) - 1:<3} {cells}")
    return "\n".join(lines) + "\n"
