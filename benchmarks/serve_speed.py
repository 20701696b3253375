"""How fast `dartsim serve` simulates, against a plain SimPy loop of the same number of
iterations measured in the same run (goal: <= 30x), and how its cost grows with requests.

The workload is Llama-3.1-70B on 4 x H100-SXM (vLLM defaults), lengths from the shipped
Azure conversation trace, with the shipped DART traces as the mask pool, at 80% of the
capacity: the request throughput a saturated closed loop of `max_num_seqs` users reaches
(measured first, on 2,000 requests). Prints wall time, peak memory (ru_maxrss), iterations
and the ratio per request count.

Usage: python benchmarks/serve_speed.py [--counts 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import glob
import resource
import time
from pathlib import Path

import simpy

from dartsim.replay.workload import load_traces
from dartsim.serve.result import Slo, summary
from dartsim.serve.scheduler import default_scheduler
from dartsim.serve.sim import ServeJob, simulate
from dartsim.serve.workload import ArrivalProcess, WorkloadSpec
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec

LOAD = 0.8
ROOT = Path(__file__).resolve().parent.parent


def simpy_loop(iterations: int) -> float:
    """Seconds a SimPy process takes to step through `iterations` timeouts."""
    env = simpy.Environment()

    def loop(env: simpy.Environment):  # type: ignore[no-untyped-def]
        for _ in range(iterations):
            yield env.timeout(0.01)

    env.process(loop(env))
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1000,10000,100000")
    args = parser.parse_args()
    spec = load_model_spec("llama-3.1-70b")
    hw = load_hardware_spec("h100-sxm")
    traces = tuple(load_traces(sorted(glob.glob(str(ROOT / "traces" / "*-[57]0.pt")))))
    users = default_scheduler(hw).max_num_seqs
    closed = WorkloadSpec(ArrivalProcess("closed", concurrency=users), requests=2000, seed=0)
    job = ServeJob(spec, hw, closed.build(spec.max_position_embeddings), traces, tp=4, concurrency=users)
    saturated = summary(simulate(job), Slo())["requests_per_s"]
    rate = LOAD * saturated
    print(f"70B on 4 x H100-SXM: saturated closed loop {saturated:.2f} requests/s; serving at {rate:.2f}/s")
    print("requests  seconds  iterations  us/iteration  simpy_s  ratio  peak_rss_MiB")
    for count in (int(c) for c in args.counts.split(",")):
        work = WorkloadSpec(ArrivalProcess("poisson", rate_per_s=rate), requests=count, seed=1)
        job = ServeJob(spec, hw, work.build(spec.max_position_embeddings), traces, tp=4)
        start = time.perf_counter()
        run = simulate(job)
        seconds = time.perf_counter() - start
        iterations = int(run.iterations["time_s"].size)
        reference = simpy_loop(iterations)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{count:8d} {seconds:8.2f} {iterations:11d} {seconds / iterations * 1e6:13.1f} "
            f"{reference:8.3f} {seconds / reference:6.1f} {rss:13.0f}"
        )


if __name__ == "__main__":
    main()
