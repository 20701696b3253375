"""`dartsim serve`: continuous-batching serving with every request carrying its own masks."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dartsim.commands.common import (
    add_format,
    add_hw,
    add_out_file,
    add_precision,
    add_stack,
    add_tp,
    emit,
    fraction,
    positive_int,
    precision_from,
    stack_from,
)


def _workload(args: argparse.Namespace) -> Any:
    from dartsim.serve.workload import ArrivalProcess, WorkloadSpec

    if args.concurrency is not None:
        if args.rate is not None:
            from dartsim.errors import UserError

            raise UserError("give --rate (arrivals) or --concurrency (a closed loop), not both")
        arrival = ArrivalProcess("closed", concurrency=args.concurrency)
    else:
        arrival = ArrivalProcess(args.arrival, rate_per_s=args.rate, cv=args.cv)
    return WorkloadSpec(
        arrival,
        requests=args.requests,
        file=args.workload,
        prompt_tokens=args.prompt_len,
        output_tokens=args.gen_len,
        use_file_arrivals=args.file_arrivals,
        seed=args.seed,
    )


def _traces(args: argparse.Namespace, spec: Any) -> tuple[Any, ...]:
    from dartsim.errors import UserError

    if args.masks and args.sparsity is not None:
        raise UserError("give --masks (recorded traces) or --sparsity (synthetic masks), not both")
    if args.masks:
        from dartsim.replay.workload import load_traces

        return tuple(load_traces(args.masks))
    if args.sparsity is not None:
        from dartsim.serve.masks import synthetic_pool

        return synthetic_pool(spec, args.sparsity, args.pool, args.seed)
    return ()


def job_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ServeJob and the WorkloadSpec the options describe."""
    from dartsim.serve.scheduler import SchedulerConfig, default_scheduler
    from dartsim.serve.sim import ServeJob
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec

    spec = load_model_spec(args.model)
    hw = load_hardware_spec(args.hw)
    stack = stack_from(args.stack, hw)
    base = default_scheduler(hw)
    scheduler = SchedulerConfig(
        max_num_seqs=args.max_num_seqs or base.max_num_seqs,
        max_num_batched_tokens=args.max_batched_tokens or base.max_num_batched_tokens,
        chunked_prefill=args.chunked_prefill,
        block_size=args.block_size,
        preemption=args.preemption,
        admission=args.admission,
    )
    workload = _workload(args)
    requests = workload.build(spec.max_position_embeddings)
    traces = _traces(args, spec)
    job = ServeJob(
        spec, hw, requests, traces, args.tp, stack, precision_from(args), scheduler,
        args.replicas, args.router,
        args.concurrency, args.seed, progress=not args.quiet, mask_apply=args.mask_apply,
    )  # fmt: skip
    return job, workload


def run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from dartsim.report import render
    from dartsim.report.serve import perfetto, requests_csv, summary_md
    from dartsim.serve.result import Slo
    from dartsim.serve.run import find_capacity, job_at_rate, serve

    slo = Slo(args.slo_ttft, args.slo_tpot, args.slo_e2e)
    if args.find_capacity and args.rate is None:
        args.rate = 1.0  # where the search starts
    job, workload = job_from_args(args)
    if args.find_capacity:
        if args.concurrency is not None:
            from dartsim.errors import UserError

            raise UserError("--find-capacity searches arrival rates: it does not take --concurrency")

        def say(line: str) -> None:
            if not args.quiet:
                sys.stderr.write(line + "\n")

        start = args.rate or 1.0
        quiet_job = replace(job, progress=False)
        payload: dict[str, Any] = {
            "slo": slo.as_dict(),
            "run": find_capacity(lambda r: job_at_rate(quiet_job, workload, r), slo, True, start, say),
        }
        if args.compare_dense:
            payload["dense"] = find_capacity(
                lambda r: job_at_rate(quiet_job, workload, r), slo, False, start, say
            )
        if args.format == "json":
            emit(render.json_text(payload), args.out)
        else:
            rows = [[name, f"{p['capacity_rate_per_s'] or 0:.4g}", str(len(p["probes"]))]
                    for name, p in payload.items() if name != "slo"]  # fmt: skip
            emit(render.markdown_table(["run", "capacity (requests/s)", "probes"], rows), args.out)
        return 0
    outcome = serve(job, slo, args.compare_dense)
    if args.format == "json":
        text = render.json_text(outcome.payload)
    elif args.format == "csv":
        text = requests_csv(outcome.run, outcome.dense)
    else:
        text = summary_md(outcome.payload)
    if args.perfetto:
        from dartsim.fileio import atomic_write_text

        atomic_write_text(args.perfetto, render.json_text(perfetto(outcome.run, args.perfetto_iterations)))
        sys.stderr.write(f"wrote {args.perfetto}\n")
    emit(text, args.out)
    return 0


def _positive(unit: str) -> Any:
    """argparse type: a positive finite number of `unit`."""

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number of {unit}, got {text!r}")
        return value

    return parse


_seconds = _positive("seconds")
parse_rate = _positive("requests per second")


def add_slo_options(p: Any) -> None:
    """`--slo-ttft`, `--slo-tpot`, `--slo-e2e`: per-request targets in seconds."""
    p.add_argument("--slo-ttft", type=_seconds, metavar="S",
                   help="TTFT target per request (s); goodput counts requests meeting all")  # fmt: skip
    p.add_argument("--slo-tpot", type=_seconds, metavar="S", help="TPOT target per request (s)")
    p.add_argument("--slo-e2e", type=_seconds, metavar="S", help="end-to-end target per request (s)")


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """The model, device, workload, masks and scheduler options `serve` and `report serve` share."""
    from dartsim.serve.scheduler import ADMISSIONS, DEFAULT_BLOCK_SIZE, PREEMPTIONS
    from dartsim.serve.sim import MASK_APPLY, ROUTERS
    from dartsim.serve.workload import MAX_REQUESTS

    p.add_argument("--model", required=True, help="model preset or config.json (see dartsim models)")
    add_hw(p)
    add_tp(p)
    add_stack(p)
    add_precision(p)
    w = p.add_argument_group("workload")
    w.add_argument("--workload", metavar="FILE|NAME",
                   help="request trace (CSV or JSON lines: arrival, prompt tokens, output tokens; Azure and "
                   "ShareGPT-derived column names load as they are), or azure-conv-2023 (shipped)",
                   )  # fmt: skip
    w.add_argument("--file-arrivals", action=argparse.BooleanOptionalAction, default=True,
                   help="take arrival times from the --workload file when it has them (default on); "
                   "off: only its lengths, arrivals from --rate")  # fmt: skip
    w.add_argument(
        "--rate", type=parse_rate, help="arrival rate in requests/s (Poisson unless --arrival gamma)"
    )
    w.add_argument(
        "--arrival", choices=("poisson", "gamma"), default="poisson", help="arrival process (default poisson)"
    )
    w.add_argument(
        "--cv", type=float, default=1.0, help="gamma inter-arrival coefficient of variation (default 1)"
    )
    w.add_argument("--concurrency", type=positive_int, help="a closed loop of N users instead of arrivals")
    w.add_argument(
        "--requests",
        type=positive_int,
        help=f"requests to serve (default: the trace's, or 1000; at most {MAX_REQUESTS})",
    )
    w.add_argument("--prompt-len", type=positive_int, help="fixed prompt tokens (with --gen-len)")
    w.add_argument("--gen-len", type=positive_int, help="fixed output tokens (with --prompt-len)")
    w.add_argument("--seed", type=int, default=0, help="seed of arrivals, lengths and mask draws (default 0)")
    m = p.add_argument_group("masks")
    m.add_argument(
        "--masks", nargs="+", metavar="TRACE", help="the pool of recorded traces requests draw from"
    )
    m.add_argument(
        "--sparsity",
        type=fraction,
        help="synthetic DART masks at this sparsity instead (independent per request)",
    )
    m.add_argument("--pool", type=positive_int, default=16, help="synthetic traces in the pool (default 16)")
    m.add_argument(
        "--mask-apply",
        choices=MASK_APPLY,
        default="gather",
        help="gather: each step reads its union's rows by index from the full weights (default: the union "
        "changes every step); compact: each request's mask build copies its kept rows, as for one sequence",
    )
    m.add_argument("--compare-dense", action="store_true", help="serve the same requests dense too")
    s = p.add_argument_group("scheduler (defaults: vLLM V1's API server on this device)")
    s.add_argument(
        "--max-num-seqs",
        type=positive_int,
        help="sequences per iteration (vLLM: 1024 on >= 70 GiB devices but A100, else 256)",
    )
    s.add_argument(
        "--max-batched-tokens", type=positive_int, help="tokens per iteration (vLLM: 8192 / 2048 likewise)"
    )
    s.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, default=True,
                   help="split prompts to the token budget and mix them with decodes (on by default, as V1)",
                   )  # fmt: skip
    s.add_argument(
        "--block-size",
        type=positive_int,
        default=DEFAULT_BLOCK_SIZE,
        help=f"KV-cache block tokens (default {DEFAULT_BLOCK_SIZE})",
    )
    s.add_argument(
        "--preemption",
        choices=PREEMPTIONS,
        default="recompute",
        help="when KV blocks run out (default recompute, vLLM V1)",
    )
    s.add_argument(
        "--admission",
        choices=ADMISSIONS,
        default="on-demand",
        help="KV blocks as tokens arrive, preempting when out (on-demand, vLLM: the default), or a "
        "request's prompt and whole output reserved when admitted, never preempted (reserve, TensorRT-LLM's "
        "GUARANTEED_NO_EVICT)",
    )
    s.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        help="data-parallel replicas behind the router (default 1)",
    )
    s.add_argument(
        "--router",
        choices=ROUTERS,
        default="round-robin",
        help="how requests reach replicas (default round-robin)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve requests with continuous batching, each request carrying its own masks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "A discrete-event serving simulation: requests arrive (Poisson, gamma, a closed loop,\n"
            "or a request-trace file), a vLLM-V1-style scheduler batches them iteration by\n"
            "iteration (token budget, chunked prefill mixed with decode, paged KV cache,\n"
            "preemption), and every iteration is costed on the device model with the union of its\n"
            "requests' FFN masks. Each request draws a recorded trace from the --masks pool and\n"
            "follows it from its own first token: its dense windows and re-triggers fall where\n"
            "the trace has them (a request longer than its trace keeps the trace's last mask).\n"
            "Lengths default to the shipped Azure LLM conversation trace (2023, CC BY 4.0).\n"
            "See docs/serving.md for what is and is not modelled."
        ),
        epilog=(
            "examples:\n"
            "  dartsim serve --model llama-3.1-8b --hw l40s --rate 4 --requests 300 --seed 1 \\\n"
            "      --masks traces/*.pt --compare-dense --format json\n"
            "  dartsim serve --model llama-3.1-70b --hw h100-sxm --tp 4 --rate 2 --sparsity 0.5 \\\n"
            "      --slo-ttft 2 --slo-tpot 0.1 --find-capacity --compare-dense\n"
            "  dartsim serve --model llama-3.1-8b --hw h100-sxm --workload azure-conv-2023 \\\n"
            "      --perfetto serve.json      (the trace's own arrivals; open in ui.perfetto.dev)"
        ),
    )
    add_serve_options(p)
    o = p.add_argument_group("targets and output")
    add_slo_options(o)
    o.add_argument(
        "--find-capacity", action="store_true", help="search the highest --rate whose p99 meets the targets"
    )
    o.add_argument("--perfetto", metavar="FILE", help="write a Chrome/Perfetto timeline of the iterations")
    o.add_argument(
        "--perfetto-iterations",
        type=positive_int,
        default=20000,
        help="iterations in the timeline (default 20000)",
    )
    add_format(p, ("md", "json", "csv"), note="; csv: one row per request")
    add_out_file(p)
    p.set_defaults(handler=run_serve)
