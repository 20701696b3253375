"""The sparsity policies dartsim records and replays, beside DART (dartsim/dart/).

Each policy's rules live in a module of their own (pure functions of activations and
weights, each citing what it follows); policies/runner.py drives any of them on a real
model and writes a trace, and policies/quality.py measures what each costs in quality.
"""

from __future__ import annotations

from dataclasses import dataclass

from dartsim.errors import UserError


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    summary: str
    """One line for `--help` and reports."""
    prunes: str
    """What it removes: ffn-neurons, weights, heads+ffn-neurons or nothing."""
    per_input: bool
    """Whether part of its choice depends on the input (then it is recorded per prompt)."""


POLICIES: dict[str, PolicyInfo] = {
    p.name: p
    for p in (
        PolicyInfo("dense", "no pruning: the reference every policy is compared with", "nothing", False),
        PolicyInfo(
            "static",
            "GRIFFIN-style: FFN neurons chosen once from the prompt's activations, kept for the whole run",
            "ffn-neurons",
            True,
        ),
        PolicyInfo(
            "dart",
            "DART: FFN masks from observed activations, rebuilt when knowledge drift is detected",
            "ffn-neurons",
            True,
        ),
        PolicyInfo(
            "dejavu",
            "Deja Vu-style: a mask per token from a low-rank predictor fitted on calibration text "
            "(--oracle: top-k of the true activations)",
            "ffn-neurons",
            True,
        ),
        PolicyInfo(
            "wanda",
            "Wanda: unstructured weight pruning by |W| x input-activation norm on calibration text",
            "weights",
            False,
        ),
        PolicyInfo(
            "2:4",
            "semi-structured 2-of-4 weight pruning ranked by the Wanda score",
            "weights",
            False,
        ),
        PolicyInfo(
            "dsgp",
            "DSGP: attention heads and FFN neurons pruned by their sensitivity on the prompt",
            "heads+ffn-neurons",
            True,
        ),
        PolicyInfo(
            "kgds",
            "KG-DS: a gradient x activation knowledge core plus one FFN mask per task category, "
            "picked per prompt by a nearest-centroid classifier",
            "ffn-neurons",
            True,
        ),
    )
}


def policy_info(name: str) -> PolicyInfo:
    """The registry entry of `name`; a miss lists the valid names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UserError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}") from None


def policies_help() -> str:
    """One line per policy, for `--help`."""
    width = max(len(n) for n in POLICIES)
    return "\n".join(f"  {p.name:<{width}}  {p.summary}" for p in POLICIES.values())
