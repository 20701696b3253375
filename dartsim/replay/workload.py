"""The traces a replay runs: loaded once, checked, and described for the output header."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dartsim.trace.io import load_trace
from dartsim.trace.summary import dense_step_fraction
from dartsim.trace.types import Trace


def load_traces(paths: Sequence[str | Path]) -> list[Trace]:
    """Every trace of a batch, validated (a missing or corrupt file is a one-line error),
    each recorded under a policy the registry holds."""
    traces = [load_trace(p) for p in paths]
    for path, trace in zip(paths, traces, strict=True):
        known_policy(trace, path)
    return traces


def known_policy(trace: Trace, path: str | Path) -> None:
    """A trace whose policy this dartsim does not know is refused in one line."""
    from dartsim.errors import UserError
    from dartsim.policies import get_policy

    try:
        get_policy(trace.policy.name)
    except UserError as exc:
        raise UserError(f"{path}: field 'policy.name': {exc}") from None


def describe_traces(paths: Sequence[str | Path], traces: Sequence[Trace]) -> dict[str, Any]:
    """What `replay` says of its traces beside the results: the files, whether any is
    synthetic or cut short, DART's drift detection rate and dense-step fraction (pooled
    over the batch's checks and steps)."""
    checks = sum(t.drift_checks.count for t in traces)
    detected = sum(int(t.drift_checks.detected.sum()) for t in traces)
    steps = sum(t.steps.count for t in traces)
    return {
        "traces": [str(p) for p in paths],
        "synthetic": any(t.synthetic for t in traces),
        "complete": all(t.complete for t in traces),
        "drift_detection_rate": detected / checks if checks else None,
        "dense_step_fraction": sum(dense_step_fraction(t) * t.steps.count for t in traces) / steps,
    }
