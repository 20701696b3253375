"""Calibrate a hardware preset of this host from microbenchmarks, so that dartsim's
predictions can be checked against the step times `dartsim record` measured on the same
machine (`dartsim report host-check`).

Measured here, with torch on the CPU (all threads), fp32:
- peak memory bandwidth: copying a 256 MiB tensor (bytes read + written per second);
- memory efficiency: decode-shaped GEMVs (1 x 576 @ 576 x 1536, SmolLM2's FFN) streaming
  700 MB of distinct weights, over the copy bandwidth;
- tensor throughput: a 2048^3 GEMM; vector throughput: exp over an in-cache 1 MiB tensor;
- per-kernel overhead: the cost of one small eager op (a 64 x 64 linear) times the number
  of eager aten ops that one decode step of the bundled SmolLM2 runs per dartsim kernel
  (both counted, not fitted: eager PyTorch runs several ops where dartsim models one
  fused kernel).

Usage: python benchmarks/calibrate_host.py --out dartsim/specs/hw_presets/cpu-host.yaml
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as functional
from torch.utils._python_dispatch import TorchDispatchMode

from dartsim.fileio import atomic_write_text

REPEATS = 7
GEMV_MATRICES = 200


def median_seconds(fn: Callable[[], object], inner: int = 1) -> float:
    fn()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.count += 1
        return func(*args, **(kwargs or {}))


def eager_ops_per_kernel() -> tuple[int, int]:
    """(aten ops of one SmolLM2 decode step, dartsim kernels of the same step)."""
    from transformers.cache_utils import DynamicCache

    from dartsim.dart.hf import load_for_recording
    from dartsim.workload import StepShape, step_kernels

    loaded = load_for_recording(None, "cpu", 0)
    cache = DynamicCache()
    with torch.no_grad():
        loaded.model(input_ids=torch.tensor([[1, 2, 3, 4]]), past_key_values=cache, use_cache=True)
        counter = _CountOps()
        with counter:
            loaded.model(input_ids=torch.tensor([[5]]), past_key_values=cache, use_cache=True)
    kernels = step_kernels(loaded.spec, StepShape.decode(1, 5))
    return counter.count, len(kernels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    src = torch.rand(64 * 2**20)
    dst = torch.empty_like(src)
    copy_bw = 2 * src.numel() * 4 / median_seconds(lambda: dst.copy_(src))
    mats = [torch.rand(1536, 576) for _ in range(GEMV_MATRICES)]
    row = torch.rand(1, 576)
    gemv_s = median_seconds(lambda: [functional.linear(row, w) for w in mats])
    gemv_bw = GEMV_MATRICES * 1536 * 576 * 4 / gemv_s
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    gemm = 2 * 2048**3 / median_seconds(lambda: torch.mm(a, b))
    small = torch.rand(2**18)
    vector = small.numel() / median_seconds(lambda: torch.exp(small), inner=20)
    w, x = torch.rand(64, 64), torch.rand(1, 64)
    op_s = median_seconds(lambda: functional.linear(x, w), inner=2000)
    ops, kernels = eager_ops_per_kernel()
    launch = op_s * ops / kernels
    cores = os.cpu_count() or 1
    when = datetime.date.today().isoformat()
    where = (
        f"measured on this host ({platform.machine()}, {cores} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads) by benchmarks/calibrate_host.py on {when}"
    )
    text = f"""name: cpu-host
description: this development machine's CPU running eager PyTorch, calibrated by microbenchmarks (fp32)
memory:
  type: DDR
  capacity_gb: 24
  peak_bandwidth_gb_per_s: {copy_bw / 1e9:.2f}
  channels: 1
  efficiency: {gemv_bw / copy_bw:.3f}
  latency_ns: 100
  source: "{where}: copy of a 256 MiB fp32 tensor. Capacity: 24 GiB. Latency: assumption"
  efficiency_source: "measured: decode-shaped fp32 GEMVs streaming {GEMV_MATRICES} distinct 1536 x 576 weights at {gemv_bw / 1e9:.2f} GB/s, over the copy bandwidth"
compute:
  units: {cores}
  clock_mhz: 2000
  tensor_dense_tflop_per_s:
    fp32: {gemm / 1e12:.4f}
  vector_tflop_per_s: {vector / 1e12:.5f}
  efficiency: 1.0
  source: "{where}: fp32 GEMM 2048^3 (tensor), exp over an in-cache 1 MiB tensor (vector). Clock: nominal, unused"
  efficiency_source: "measured: the peaks above are achieved rates, so the efficiency is 1"
on_chip:
  sram_mb: 32
  source: "assumption: a last-level cache of the order of tens of MB"
noc:
  topology: crossbar
  tiles: {cores}
  link_bandwidth_gb_per_s: {100 * copy_bw / 1e9 / cores:.1f}
  hop_latency_ns: 0
  source: "assumption: the on-chip network is not a bottleneck on a CPU (100x DRAM bandwidth)"
link:
  type: none
  bandwidth_gb_per_s_per_direction: 1
  latency_us: 0
  source: "assumption: a single host; no tensor parallelism is modelled on it"
launch_overhead_us: {launch * 1e6:.2f}
launch_overhead_source: "{where}: one eager 64 x 64 linear takes {op_s * 1e6:.2f} us; one SmolLM2 decode step runs {ops} aten ops where dartsim models {kernels} kernels"
"""
    atomic_write_text(args.out, text)
    print(
        f"copy {copy_bw / 1e9:.2f} GB/s, GEMV streaming {gemv_bw / 1e9:.2f} GB/s, GEMM {gemm / 1e9:.1f} GFLOP/s, "
        f"vector {vector / 1e9:.2f} GFLOP/s, op {op_s * 1e6:.2f} us x {ops}/{kernels} ops per kernel "
        f"= {launch * 1e6:.2f} us per kernel -> {args.out}"
    )


if __name__ == "__main__":
    main()
