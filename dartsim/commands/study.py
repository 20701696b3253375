"""`dartsim study STUDY.yaml --out DIR`: a declarative,
resumable architecture study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dartsim.commands.common import positive_int


def _check_traces(study: dict[str, Any]) -> None:
    """Load (and so validate) every trace once before any point runs: a bad trace is the
    user's error, not a skipped point."""
    from dartsim.trace import load_trace

    for path in sorted({p for point in study["points"] for p in point.get("traces", [])}):
        load_trace(path)


def run(args: argparse.Namespace) -> int:
    from dartsim.fileio import write_file_set
    from dartsim.report.study_report import results_csv, speedup_png, study_markdown
    from dartsim.study.runner import default_jobs, run_study
    from dartsim.study.spec import load_study

    study = load_study(Path(args.study))
    _check_traces(study)
    out = Path(args.out)
    from dartsim.signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            results = run_study(
                study, out, args.jobs or default_jobs(), progress=not args.quiet, scheduler=args.scheduler
            )
    except KeyboardInterrupt as exc:
        done = len(list((out / "points").glob("*.json"))) if (out / "points").is_dir() else 0
        sys.stderr.write(
            f"dartsim: interrupted; {done} finished points are kept in {out / 'points'} (run the same "
            "command again to go on)\n"
        )
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    write_file_set(
        out,
        {
            "results.csv": results_csv(results),
            "study.md": study_markdown(study, results),
            "speedup.png": speedup_png(study, results),
        },
    )
    skipped = sum("skipped" in r for r in results)
    sys.stderr.write(
        f"wrote {out}/results.csv, study.md, speedup.png: {len(results)} points"
        + (f", {skipped} skipped (see the table)" if skipped else "")
        + "\n"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="a declarative architecture study from a YAML file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Runs every combination of a study file's axes (models, hardware presets or files\n"
            "with fields set or scaled, TP, mask mode, precision, and for synthetic workloads\n"
            "batch and sparsity), each point as DART and dense, and writes results.csv, study.md\n"
            "and speedup.png into DIR. Each finished point is saved at once under DIR/points/:\n"
            "a re-run skips it, and an interrupted run loses only the points in flight. Points\n"
            "run in parallel worker processes (results do not depend on --jobs). The file's\n"
            "format is documented in dartsim/study/spec.py; studies/ holds examples."
        ),
        epilog="examples:\n  dartsim study studies/bandwidth-70b.yaml --out reports/study-bandwidth-70b\n"
        "  dartsim study studies/bandwidth-70b.yaml --out out --jobs 2\n"
        "  dartsim study studies/batch-union-8b.yaml --out out --scheduler tcp://10.0.0.5:8786",
    )
    parser.add_argument("study", metavar="STUDY.yaml", help="the study file")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the results (created if missing)"
    )
    parser.add_argument(
        "--jobs", type=positive_int, default=None, help="worker processes (default: the usable cores)"
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the points on a Dask cluster (e.g. tcp://10.0.0.5:8786) instead of local processes; "
        "needs pip install 'dartsim[dask]' and the trace files at the same paths on the workers",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run, output_folders=("out",))
