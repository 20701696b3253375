"""How the drift-detector study judges a setting: four criteria, fixed before the study was
first run, and the rule that picks the default among the settings that meet them.
Torch-free, so that reports can use it."""

from __future__ import annotations

from typing import Any

MAX_DETECTION_RATE = 0.5
"""Criterion 1, selective: at most half the checks flag drift (near 1 the detector is a timer)."""
MIN_KL_LIFT = 2.0
"""Criterion 2, tracks quality: windows flagged as drift lose at least twice the KL of calm ones."""
MAX_FIRST_CHECK_SHARE = 0.5
"""Criterion 3, not the clock: at most half the re-triggers fire at the first check that can."""
MAX_KL_VS_STATIC = 0.75
"""Criterion 4, quality bounded: mean KL at most 3/4 of the first-mask-only run at the same
sparsity (re-triggering must buy back at least a quarter of the loss)."""
DEFAULT_SPARSITY = 0.7
"""The sparsity the defaults are chosen at (the paper's Table 1)."""

CRITERIA = (
    f"(1) drift-detection rate <= {MAX_DETECTION_RATE}; (2) KL lift >= {MIN_KL_LIFT}; "
    f"(3) share of re-triggers fired at the first check that could fire <= {MAX_FIRST_CHECK_SHARE}; "
    f"(4) mean KL <= {MAX_KL_VS_STATIC} x that of the static run (first mask only) at the same "
    f"sparsity. Among the DART settings at {DEFAULT_SPARSITY:.0%} sparsity that meet all four, "
    "the one with the lowest dense-step fraction (the most sparsity delivered) is the default."
)


def _le(value: Any, limit: float) -> bool:
    return value is not None and value <= limit  # None: NaN in the payload, which fails


def criteria_met(summary: dict[str, Any], static_kl: Any) -> list[bool]:
    """Which of the four criteria a DART setting's summary meets."""
    lift = summary["kl_lift"]
    no_retriggers = summary["retriggers_per_1k"] == 0
    return [
        _le(summary["detection_rate"], MAX_DETECTION_RATE),
        lift is not None and lift >= MIN_KL_LIFT,
        no_retriggers or _le(summary["first_check_share"], MAX_FIRST_CHECK_SHARE),
        static_kl is not None and _le(summary["kl"], MAX_KL_VS_STATIC * static_kl),
    ]


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The default by the rule in CRITERIA among payload rows, or None if none qualifies."""
    qualifying = [
        r for r in rows if r["mode"] == "dart" and r["sparsity"] == DEFAULT_SPARSITY and all(r["criteria"])
    ]
    if not qualifying:
        return None
    return min(qualifying, key=lambda r: (r["summary"]["dense_fraction"], r["label"]))
