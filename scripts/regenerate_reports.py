"""Regenerate every shipped report in reports/ in one step (the commands of
reports/README.md), or check that they are current.

    python scripts/regenerate_reports.py            rewrite the reports that are deterministic
    python scripts/regenerate_reports.py --check    regenerate into a temporary folder, diff (exit 1: changed)
    python scripts/regenerate_reports.py --slow     also re-run the long studies (policies about 20 min,
                                                    detector about 80 min), this host's validation and
                                                    the serving validation (about 15 min)

The deterministic reports are what the tests diff; the slow ones are re-rendered from
their saved JSON unless --slow re-runs them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DARTSIM = [sys.executable, "-m", "dartsim"]
TRACES = sorted(str(p.relative_to(REPO)) for p in (REPO / "traces").glob("*.pt"))
DART_70 = [t for t in TRACES if t.endswith("-70.pt") and "static" not in t]
"""The shipped DART traces at 70% sparsity (five prompts): the serving reports' mask pool."""
STUDIES = sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))
SERVING_STUDY = "study-serving-"
"""Serving studies keep their points (each a capacity search of minutes): a test renders the
report from them and recomputes one."""

# (what it writes, relative to reports/; the command with OUT standing for that path)
REPORTS: list[tuple[str, list[str]]] = [
    ("table7.md", ["table7", "--out", "OUT"]),
    ("table7.json", ["table7", "--format", "json", "--out", "OUT"]),
    ("retriggers.md", ["report", "retriggers", *TRACES, "--out", "OUT"]),
    (
        "figure5.png",
        [
            "report",
            "figure5",
            "--dense",
            "traces/two-topic-dense.pt",
            "--static",
            "traces/two-topic-static-70.pt",
            "--dart",
            "traces/two-topic-70.pt",
            "--out",
            "OUT",
        ],
    ),
    (
        "host-check.md",
        ["report", "host-check", *TRACES, "--hw", "traces/host-2026-11-23.yaml", "--out", "OUT"],
    ),
    (
        "sweep-70b.md",
        [
            "sweep",
            "traces/two-topic-70.pt",
            "--model",
            "llama-3.1-70b",
            "--hw",
            "l40s,h100-pcie,h100-sxm,h200,b200,mi300x",
            "--tp",
            "auto,4",
            "--mask-apply",
            "compact,gather",
            "--quiet",
            "--out",
            "OUT",
        ],
    ),
    (
        "mechanisms-70b.md",
        [
            "report",
            "mechanisms",
            "--model",
            "llama-3.1-70b",
            "--hw",
            "h100-sxm",
            "--tp",
            "1,4",
            "--keep",
            "0.3",
            "--out",
            "OUT",
        ],
    ),
    ("validation-gpu.md", ["validate", "--published", "--out", "OUT"]),
    ("validation-gpu.csv", ["validate", "--published", "--format", "csv", "--out", "OUT"]),
    ("stacks.md", ["stack", "list", "--out", "OUT"]),
    ("validation-energy.md", ["validate", "--energy", "--fit-static", "--quiet", "--out", "OUT"]),
    ("policies.md", ["report", "policies", "--from-json", "reports/policies.json", "--out", "OUT"]),
    ("detector.md", ["report", "detector", "--from-json", "reports/detector.json", "--out", "OUT"]),
    *[(f"study-{name}", ["study", f"studies/{name}.yaml", "--out", "OUT", "--quiet"]) for name in STUDIES],
    *[
        (
            f"serve-{label}",
            [
                "report",
                "serve",
                "--model",
                model,
                "--hw",
                hw,
                *tp,
                "--rates",
                rates,
                "--requests",
                "300",
                "--seed",
                "1",
                "--masks",
                *masks,
                "--out",
                "OUT",
                "--quiet",
            ],
        )
        for label, model, hw, tp, rates, masks in (
            ("8b-l40s-dart", "llama-3.1-8b", "l40s", [], "1,2,4,6", DART_70),
            ("8b-l40s-static", "llama-3.1-8b", "l40s", [], "1,2,4,6", ["traces/two-topic-static-70.pt"]),
            ("70b-h100-tp4-dart", "llama-3.1-70b", "h100-sxm", ["--tp", "4"], "2,4,8,12", DART_70),
        )
    ],
]
SLOW: list[tuple[str, list[str]]] = [
    (
        "policies.md",
        [
            "report",
            "policies",
            "--json",
            "reports/policies.json",
            "--plot",
            "reports/policies-pareto.png",
            "--quiet",
            "--out",
            "OUT",
        ],
    ),
    ("detector.md", ["report", "detector", "--json", "reports/detector.json", "--quiet", "--out", "OUT"]),
    ("validation-cpu.md", ["validate", "--hw", "cpu-host", "--quiet", "--out", "OUT"]),
    ("validation-serving.md", ["validate", "--serving", "--jobs", "2", "--quiet", "--out", "OUT"]),
]
"""Reports that take long or measure this machine (not diffed by --check)."""


def run(target: Path, argv: list[str]) -> None:
    command = [*DARTSIM, *(str(target) if a == "OUT" else a for a in argv)]
    print("$ dartsim " + " ".join(command[len(DARTSIM) :]), flush=True)
    subprocess.run(command, cwd=REPO, check=True)
    points = target / "points"
    if target.is_dir() and points.is_dir() and not target.name.startswith(SERVING_STUDY):
        shutil.rmtree(points)  # a replay study's per-point cache is not shipped


def same(a: Path, b: Path) -> bool:
    """Whether two reports (files, or folders of text files) hold the same bytes; plots
    are left out (deterministic per matplotlib version, not across machines)."""
    if a.is_dir():
        names = {p.name for p in a.iterdir() if p.suffix != ".png"}
        if not b.is_dir() or names != {p.name for p in b.iterdir() if p.suffix != ".png"}:
            return False
        return all(same(a / n, b / n) for n in names)
    return b.is_file() and a.read_bytes() == b.read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="diff fresh reports against the shipped ones")
    parser.add_argument("--slow", action="store_true", help="also re-run the long and host-measured reports")
    args = parser.parse_args()
    reports = REPORTS + (SLOW if args.slow and not args.check else [])
    if not args.check:
        for name, argv in reports:
            run(REPO / "reports" / name, argv)
        return 0
    changed = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, argv in REPORTS:
            fresh = Path(scratch) / name
            run(fresh, argv)
            if name.endswith(".png"):
                continue  # deterministic per matplotlib version, not across machines (reports/README.md)
            if not same(fresh, REPO / "reports" / name):
                changed.append(name)
    for name in changed:
        print(f"changed: reports/{name}")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
