"""Microbenchmarks of a CUDA GPU through PyTorch, and the hardware file they make
(`dartsim calibrate --device cuda --base PRESET`).

The datasheet figures (peaks, capacity, links) come from the base file; what is measured
replaces its fields, each with a source saying what was measured and how:
- memory efficiency: copying a 1 GiB tensor on the device, over the base's peak bandwidth;
- GEMM curve: BF16 GEMMs across decode- and prefill-shaped sizes, timed with CUDA events
  over back-to-back calls; the efficiency fields are fitted with the engine's rule;
- vector throughput: elementwise multiply, add and exp on a tensor that stays in L2;
- launch: the per-kernel gap inside a CUDA graph of tiny kernels, the host's issue time
  per eager kernel, and the fixed cost of one graph launch.
Collectives need several GPUs and are not measured (the base file's figures stay).
Nothing here runs without a CUDA device; tests skip it cleanly.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dartsim.calibrate.gemm_fit import GemmFit, GemmSample, fit_gemm
from dartsim.specs.dtypes import BF16
from dartsim.specs.hardware import HardwareSpec, hardware_spec_from_dict
from dartsim.specs.hardware_yaml import hardware_to_yaml_dict
from dartsim.units import GB, MS_PER_S, TFLOP, US_PER_S

COPY_BYTES = 2**30
GEMM_MS = (1, 16, 128, 512, 2048, 8192)
GEMM_KN = ((4096, 4096), (4096, 14336), (8192, 8192))
GEMM_QUICK_MS = (1, 512)
GEMM_QUICK_KN = ((4096, 4096),)
VECTOR_ELEMENTS = 2**20
"""4 MiB of fp32: stays in any recent GPU's L2."""
TINY_KERNELS = 200
"""Tiny kernels per graph (and per eager burst) for the launch measurements."""


def available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def device_name() -> str:
    import torch

    return str(torch.cuda.get_device_name(0))


@dataclass
class CudaMeasurements:
    device: str
    copy_bytes_per_s: float
    gemms: list[GemmSample]
    vector_flops_per_s: float
    kernel_gap_s: float
    host_issue_s: float
    graph_launch_s: float
    when: str
    torch_version: str


def _events_time(fn: Callable[[], object], repeats: int, inner: int) -> float:
    """Median seconds per call, from CUDA events around `inner` back-to-back calls."""
    import statistics

    import torch

    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / MS_PER_S / inner)
    return statistics.median(samples)


def _copy_bandwidth(size: int, repeats: int) -> float:
    """Bytes per second read + written copying `size` bytes on the device."""
    import torch

    src = torch.empty(size // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    return 2 * size / _events_time(lambda: dst.copy_(src), repeats, 5)


def measure(quick: bool = False, progress: Callable[[str], None] | None = None) -> CudaMeasurements:
    import time

    import torch

    say = progress or (lambda _msg: None)
    repeats = 3 if quick else 7
    dev = torch.device("cuda")
    say("memory bandwidth (device copy)")
    copy_bw = _copy_bandwidth(COPY_BYTES // (4 if quick else 1), repeats)

    say("GEMMs (bf16)")
    gemms = []
    ms, kns = (GEMM_QUICK_MS, GEMM_QUICK_KN) if quick else (GEMM_MS, GEMM_KN)
    for k, n in kns:
        weight = torch.randn(k, n, dtype=torch.bfloat16, device=dev)
        for m in ms:
            x = torch.randn(m, k, dtype=torch.bfloat16, device=dev)
            seconds = _events_time(functools.partial(torch.matmul, x, weight), repeats, 20)
            gemms.append(GemmSample(m, n, k, BF16, seconds))
        del weight

    say("vector unit")
    a = torch.rand(VECTOR_ELEMENTS, device=dev)
    b = torch.rand(VECTOR_ELEMENTS, device=dev)
    out = torch.empty_like(a)
    ops = (lambda: torch.mul(a, b, out=out), lambda: torch.add(a, b, out=out), lambda: torch.exp(a, out=out))
    vector_s = sum(_events_time(op, repeats, 100) for op in ops)
    vector_rate = len(ops) * VECTOR_ELEMENTS / vector_s

    say("kernel launch (graph gap, eager issue, graph launch)")
    tiny = torch.zeros(32, device=dev)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            tiny.add_(1.0)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(TINY_KERNELS):
            tiny.add_(1.0)
    single = torch.cuda.CUDAGraph()
    with torch.cuda.graph(single):
        tiny.add_(1.0)
    many_s = _events_time(graph.replay, repeats, 5)
    one_s = _events_time(single.replay, repeats, 50)
    kernel_gap = max(0.0, (many_s - one_s) / (TINY_KERNELS - 1))
    torch.cuda.synchronize()
    host = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(TINY_KERNELS):
            tiny.add_(1.0)
        host.append((time.perf_counter() - start) / TINY_KERNELS)
        torch.cuda.synchronize()
    host.sort()
    return CudaMeasurements(
        device=device_name(),
        copy_bytes_per_s=copy_bw,
        gemms=gemms,
        vector_flops_per_s=vector_rate,
        kernel_gap_s=kernel_gap,
        host_issue_s=host[len(host) // 2],
        graph_launch_s=max(0.0, one_s - kernel_gap),
        when=datetime.date.today().isoformat(),
        torch_version=torch.__version__,
    )


def stack_document(meas: CudaMeasurements, name: str) -> dict[str, Any]:
    """The stack measured here: the pytorch-eager preset with the measured per-kernel gap
    (inside a CUDA graph), host issue time (eager) and graph launch cost."""
    from dartsim.calibrate.timing import measured_stack

    where = (
        f"measured on {meas.device} (torch {meas.torch_version}) by dartsim calibrate --device cuda "
        f"on {meas.when}: a CUDA graph of {TINY_KERNELS} tiny kernels (gap per kernel), the same kernels "
        "issued eagerly from Python (host time per kernel), and a one-kernel graph (launch cost)"
    )
    values = {
        "launch.kernel_gap_us": round(meas.kernel_gap_s * US_PER_S, 3),
        "launch.host_issue_us": round(meas.host_issue_s * US_PER_S, 3),
        "launch.graph_launch_us": round(meas.graph_launch_s * US_PER_S, 3),
    }
    return measured_stack("pytorch-eager", name, values, where)


def preset(base: HardwareSpec, meas: CudaMeasurements, name: str | None) -> tuple[dict[str, Any], GemmFit]:
    """The base file with the measured fields replaced, each with its source."""
    where = (
        f"measured on {meas.device} (torch {meas.torch_version}) by dartsim calibrate --device cuda "
        f"on {meas.when}"
    )
    doc = hardware_to_yaml_dict(base)
    doc["name"] = name or f"{base.name}-measured"
    doc["description"] = f"{base.description}; measured fields from dartsim calibrate"
    mem = doc["memory"]
    mem["efficiency"] = round(min(1.0, meas.copy_bytes_per_s / base.memory.peak_bandwidth_bytes_per_s), 4)
    mem["efficiency_source"] = (
        f"{where}: device-to-device copy of 1 GiB at {meas.copy_bytes_per_s / GB:.1f} GB/s (read + write), "
        "over the datasheet peak"
    )
    comp = doc["compute"]
    comp["vector_tflop_per_s"] = round(meas.vector_flops_per_s / TFLOP, 4)
    comp["vector_efficiency"] = 1.0
    comp["vector_tflop_per_s_source"] = f"{where}: elementwise mul, add and exp over a 4 MiB tensor in L2"
    comp.pop("vector_efficiency_source", None)
    measured = {
        "memory.efficiency",
        "compute.vector_tflop_per_s",
        "compute.gemm.efficiency",
        "compute.gemm.k_overhead",
        "compute.gemm.m_overhead",
    }
    doc["calibrated"] = sorted({*doc.get("calibrated", []), *measured})
    hw = hardware_spec_from_dict(doc, "calibration")
    fit = fit_gemm(meas.gemms, hw)
    gemm = comp["gemm"]
    gemm.update(efficiency=fit.efficiency, k_overhead=fit.k_overhead, m_overhead=fit.m_overhead)
    shapes = ", ".join(f"{s.m}x{s.k}x{s.n}" for s in meas.gemms)
    gemm["source"] = (
        f"fitted by dartsim.calibrate.gemm_fit to {len(meas.gemms)} BF16 GEMMs {where} "
        f"(m x k x n: {shapes}); "
        f"rms log error {fit.rms_log_error:.3f}; tiles from {base.name}"
    )
    for key in [k for k in gemm if k.endswith("_source")]:
        del gemm[key]
    hardware_spec_from_dict(doc, "calibration")
    return doc, fit
