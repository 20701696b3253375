"""The drift-detector study as a markdown report (from the payload of
dartsim/study/detector.py study_payload, or the JSON it was saved as)."""

from __future__ import annotations

from typing import Any

from dartsim.report.render import markdown_table
from dartsim.study.criteria import CRITERIA, choose


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _marks(criteria: list[bool]) -> str:
    return " ".join("yes" if ok else "no" for ok in criteria) if criteria else "baseline"


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    header = [
        "setting", "drift detection rate", "re-triggers / 1k tokens", "dense-step fraction",
        "re-triggers at first possible check", "top-1 agreement (all / masked)",
        "mean KL nats (all / masked)", "KL lift", "criteria 1-4",
    ]  # fmt: skip
    table = []
    for r in rows:
        s = r["summary"]
        table.append([
            r["label"],
            _pct(s["detection_rate"]),
            _num(s["retriggers_per_1k"], 1),
            _pct(s["dense_fraction"]),
            _pct(s["first_check_share"]),
            f"{_pct(s['agreement'])} / {_pct(s['agreement_masked'])}",
            f"{_num(s['kl'], 3)} / {_num(s['kl_masked'], 3)}",
            _num(s["kl_lift"]),
            _marks(r["criteria"]),
        ])  # fmt: skip
    prompts = payload["prompts"]
    per_prompt = []
    for r in rows:
        cells = [r["label"]]
        for name in prompts:
            s = r["per_prompt"][name]
            cells.append(
                f"{_pct(s['detection_rate'])}, {_num(s['retriggers_per_1k'], 0)}, {_num(s['kl'], 2)}"
            )
        per_prompt.append(cells)
    chosen = choose(rows)
    if chosen is None:
        verdict = (
            "**No DART setting meets all four criteria.** On this model none of the detector "
            "settings tried gives re-triggers that can be told apart from the clock while "
            "bounding the quality loss; the defaults stay as documented in traces/README.md, "
            "and every speedup measured with them should be read with that in mind."
        )
    else:
        verdict = (
            f"**Chosen default: {chosen['label']}** (dense-step fraction "
            f"{_pct(chosen['summary']['dense_fraction'])}, drift detection rate "
            f"{_pct(chosen['summary']['detection_rate'])}, mean KL {_num(chosen['summary']['kl'], 3)} nats)."
        )
    partial = (
        []
        if payload.get("complete", True)
        else ["**Partial results**: the study was interrupted; `--resume` continues it.", ""]
    )
    return "\n".join([
        "# Drift-detector study",
        "",
        *partial,
        f"Model: {payload['model']}. Each run generates {payload['tokens_per_run']} tokens "
        "(greedy, end-of-sequence suppressed) on each prompt: "
        + ", ".join(prompts) + ". Regenerate with `dartsim report detector` (about an hour on two "
        "CPU cores); `--json` keeps the raw numbers.",
        "",
        "Columns: the drift detection rate is the share of drift checks flagged as drift; "
        "the dense-step fraction is the share of generated tokens whose forward ran without a "
        "mask; top-1 agreement and KL(dense || DART) compare each generated position's "
        "next-token distribution with the dense model's on the same prefix (one dense forward "
        "over the whole sequence), over all tokens and over those generated under a mask; the "
        "KL lift is the mean KL of the windows flagged as drift over that of the windows that "
        "were not (above 1: flagged windows really are worse); 're-triggers at first possible "
        "check' is the share fired when every check since the mask came into force had "
        "flagged drift (what a detector that flags everything does).",
        "",
        f"Criteria, fixed before the study was run: {CRITERIA}",
        "",
        markdown_table(header, table),
        verdict,
        "",
        "## Per prompt (drift detection rate, re-triggers / 1k tokens, mean KL nats)",
        "",
        markdown_table(["setting", *prompts], per_prompt),
    ])  # fmt: skip
