"""Replay at scale, each figure beside a reference measured in the same run.

1. A synthetic 100k-token Llama-3.1-70B trace with 100 re-triggers replayed on L40S at
   TP=2: wall time as a ratio to a plain loop of 100k SimPy timeouts (target <= 20x),
   peak RSS (target <= 2 GiB).
2. 1M tokens as a batch of eight 125k-token traces (125 re-triggers each) on L40S at
   TP=8: wall time as a ratio to (1) (target <= 10x), peak RSS (target <= 1 GiB).
3. `dartsim trace synth` of a 125k-token 70B trace (target <= 10 s), and its file size.

Each scenario runs in its own process, so that its peak RSS is its own (trace
generation included). Usage: python benchmarks/replay_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SCENARIO = r"""
import json, resource, sys, time
import simpy
from dartsim.engine.replay_config import ReplayConfig
from dartsim.replay.run import run_steps
from dartsim.replay.steps import build_steps
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.policies.dart.synth import synth_trace

tokens, retriggers, batch, tp = (int(x) for x in sys.argv[1:5])
spec = load_model_spec("llama-3.1-70b")
traces = [synth_trace(spec, 128, tokens, retriggers, 0.7, seed=i) for i in range(batch)]
start = time.perf_counter()
steps = build_steps(traces, spec, False, tp)
result = run_steps(steps, spec, load_hardware_spec("l40s"), ReplayConfig(tp=tp))
wall = time.perf_counter() - start
env = simpy.Environment()
def loop(env):
    for _ in range(100_000):
        yield env.timeout(1)
env.process(loop(env))
start = time.perf_counter()
env.run()
simpy_s = time.perf_counter() - start
print(json.dumps({
    "wall_s": wall,
    "simpy_100k_s": simpy_s,
    "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "tokens": result.tokens,
    "device_s": result.totals.time_s,
    "tpot_ms": result.tpot_s * 1e3,
    "costed_steps": result.simulated_steps,
}))
"""
GIB = 2**30


def scenario(tokens: int, retriggers: int, batch: int, tp: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(tokens), str(retriggers), str(batch), str(tp)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the tokens (a smoke run)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    one = scenario(100_000 // scale, 100 // scale, 1, 2)
    ratio = one["wall_s"] / one["simpy_100k_s"]
    print(
        f"1. 70B, {one['tokens']:,} tokens, L40S TP=2: {one['wall_s']:.2f} s = {ratio:.1f} x a plain loop of "
        f"100k SimPy timeouts ({one['simpy_100k_s']:.3f} s; target <= 20x); peak RSS "
        f"{one['rss_bytes'] / GIB:.2f} GiB (target <= 2); {one['costed_steps']} steps costed; "
        f"TPOT {one['tpot_ms']:.2f} ms"
    )
    big = scenario(125_000 // scale, 125 // scale, 8, 8)
    print(
        f"2. 70B, batch of 8 x {125_000 // scale:,} tokens ({big['tokens']:,}), L40S TP=8: "
        f"{big['wall_s']:.2f} s = {big['wall_s'] / one['wall_s']:.1f} x (1) (target <= 10x); "
        f"peak RSS {big['rss_bytes'] / GIB:.2f} GiB (target <= 1); {big['costed_steps']} steps costed"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "s.pt")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dartsim", "trace", "synth", "--model", "llama-3.1-70b", "--gen-len",
             str(125_000 // scale), "--retriggers", str(125 // scale), "--sparsity", "0.7", "--out", path],
            check=True,
            capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - start
        print(
            f"3. dartsim trace synth, 70B, {125_000 // scale:,} tokens: {wall:.2f} s (target <= 10 s), "
            f"{os.path.getsize(path) / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
