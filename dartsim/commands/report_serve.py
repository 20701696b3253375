"""`dartsim report serve`: one serving setup at several arrival rates, masks beside dense:
latency against load, the mask union against the batch, and a time series."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dartsim.commands.serve import add_serve_options, add_slo_options, job_from_args, parse_rate


def run_report_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from dartsim.commands.common import split_list
    from dartsim.errors import UserError
    from dartsim.report.bundle import write_bundle
    from dartsim.report.serve import latency_vs_load, load_md, time_series, union_vs_batch
    from dartsim.serve.result import Slo, summary
    from dartsim.serve.run import job_at_rate
    from dartsim.serve.sim import simulate

    rates = []
    for item in split_list(args.rates, "--rates"):
        try:
            rates.append(parse_rate(item))
        except argparse.ArgumentTypeError as exc:
            raise UserError(f"--rates: {exc}") from None
    args.rate = rates[0]
    slo = Slo(args.slo_ttft, args.slo_tpot, args.slo_e2e)
    job, workload = job_from_args(args)
    job = replace(job, progress=False)
    if not job.traces:
        raise UserError("report serve compares masks with dense: give --masks or --sparsity")
    rows, last = [], None
    for rate in sorted(rates):
        at = job_at_rate(job, workload, rate)
        masked, dense = simulate(at), simulate(at, masked=False)
        rows.append((rate, summary(masked, slo), summary(dense, slo)))
        last = masked
        if not args.quiet:
            sys.stderr.write(f"rate {rate:g}/s done\n")
    assert last is not None
    title = f"{job.model.name} on {job.hardware.name}"
    curves = {
        metric: [
            ("masks", [r for r, _, _ in rows], [m[metric]["p99"] or 0.0 for _, m, _ in rows]),
            ("dense", [r for r, _, _ in rows], [d[metric]["p99"] or 0.0 for _, _, d in rows]),
        ]
        for metric in ("ttft_s", "tpot_s")
    }
    it = last.iterations
    masked_rows = ~it["dense"].astype(bool)
    keep = float(np.mean([t.epochs.kept.mean() / t.width for t in job.traces if t.epochs.count]))
    files = {
        "serve.md": load_md(title, rows, slo).encode(),
        "ttft-vs-load.png": latency_vs_load(curves["ttft_s"], "TTFT", title),
        "tpot-vs-load.png": latency_vs_load(curves["tpot_s"], "TPOT", title),
        "union-vs-batch.png": union_vs_batch(
            [
                (
                    "iterations with no request in a dense window",
                    it["sequences"][masked_rows],
                    it["kept_fraction"][masked_rows],
                )
            ],
            keep,
            title,
        ),
        "timeseries.png": time_series(last, f"{title}, {max(rates):g} requests/s"),
    }
    write_bundle(Path(args.out), files)
    sys.stderr.write(f"wrote {args.out}/{', '.join(sorted(files))}\n")
    return 0


def register_report(report_sub: argparse._SubParsersAction) -> None:
    p = report_sub.add_parser(
        "serve",
        help="latency against load, mask union against batch, dense beside masks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serves the same requests at each of --rates, with the masks and dense, and writes\n"
            "serve.md (the figures per rate), ttft-vs-load.png and tpot-vs-load.png (p99),\n"
            "union-vs-batch.png (kept fraction per iteration against its batch, beside the\n"
            "independent-mask bound 1-(1-k)^b) and timeseries.png (the highest rate) into DIR."
        ),
        epilog="example:\n  dartsim report serve --model llama-3.1-8b --hw l40s --rates 1,2,4 "
        "--masks traces/*-70.pt --requests 200 --out serve-8b",
    )
    add_serve_options(p)
    p.add_argument("--rates", required=True, help="comma-separated arrival rates (requests/s)")
    add_slo_options(p)
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the report")
    p.set_defaults(handler=run_report_serve, output_folders=("out",))
