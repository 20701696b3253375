"""Replay speed and memory: a synthetic 100k-token Llama-3.1-70B trace with 100
re-triggers on L40S with TP=2 (target: at most 30 s and 2 GiB peak on a 2-core machine),
and a 1k-token Llama-3.1-8B replay (target: at most 2 s). Prints simulated tokens per
wall-clock second.

Usage: python benchmarks/replay_speed.py [--tokens 100000] [--retriggers 100]
"""

from __future__ import annotations

import argparse
import resource
import time

from dartsim.engine.replay import ReplayConfig, build_steps
from dartsim.engine.run import run_steps
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.trace.synth import synth_trace
from dartsim.units import GiB


def replay(model: str, tokens: int, retriggers: int, hw: str, tp: int) -> tuple[float, float, dict]:  # type: ignore[type-arg]
    spec = load_model_spec(model)
    trace = synth_trace(spec, 128, tokens, retriggers, 0.7)
    start = time.perf_counter()
    steps = build_steps([trace], spec, False, tp)
    result = run_steps(steps, spec, load_hardware_spec(hw), ReplayConfig(tp=tp))
    wall = time.perf_counter() - start
    return wall, tokens / wall, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--retriggers", type=int, default=100)
    args = parser.parse_args()
    wall, rate, result = replay("llama-3.1-8b", 1000, 1, "l40s", 1)
    print(
        f"llama-3.1-8b, 1k tokens, L40S:        {wall:6.2f} s wall (target <= 2 s), "
        f"{rate:,.0f} simulated tokens/s"
    )
    wall, rate, result = replay("llama-3.1-70b", args.tokens, args.retriggers, "l40s", 2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"llama-3.1-70b, {args.tokens // 1000}k tokens, {args.retriggers} re-triggers, L40S TP=2: "
        f"{wall:6.2f} s wall (target <= 30 s), {rate:,.0f} simulated tokens/s, "
        f"{result['simulated_steps']} steps simulated"
    )
    print(f"peak memory (whole process, trace generation included): {peak / GiB:.2f} GiB (target <= 2 GiB)")
    print(
        f"simulated: {result['totals']['time_s']:.1f} s of device time, TPOT {result['tpot_s'] * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
