"""Microbenchmarks of this host's CPU running eager PyTorch at fp32, and the preset they
make (`dartsim calibrate --device cpu`).

What is measured, each on its own (none of it is a validation case):
- peak memory bandwidth: copying a 256 MiB tensor (bytes read + written per second);
- memory efficiency and latency: GEMVs streaming distinct weights (a pool far larger than
  the last-level cache) at sizes from 0.4 to 64 MiB; a straight line through time against
  bytes gives the streaming rate (its ratio to the copy bandwidth is the efficiency) and
  the start-up delay of each streamed matrix (the latency), once the per-call cost of a
  library operation is taken off;
- tensor throughput: fp32 GEMMs across decode- and prefill-shaped sizes, each call on a
  different copy of its weight (as a decoder step reads every weight once, from DRAM);
  the best rate is the peak, and the GEMM efficiency fields are fitted to all of them
  (gemm_fit.py), with the measured cost of one small call as the per-call overhead;
- vector throughput: elementwise multiply, add, exp and rsqrt over in-cache tensors, one
  FLOP per element each;
- dispatch: decode steps of two tiny random-weight Llamas of different depth (every
  operation a few elements, so their time is dispatch): the slope per kernel dartsim
  models is the issue cost of a kernel, the intercept the host's work per step.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dartsim.calibrate.gemm_fit import GemmFit, GemmSample, fit_gemm
from dartsim.calibrate.timing import inner_for, time_call
from dartsim.specs.dtypes import FP32
from dartsim.specs.hardware_schema import FIELDS
from dartsim.units import GB, NS_PER_S, TFLOP, US_PER_S

COPY_BYTES = 256 * 2**20
GEMV_SHAPES = ((192, 576), (576, 576), (1536, 576), (576, 1536), (2048, 2048), (4096, 4096))
"""Streamed weights, [out, in], from decode-sized to large."""
GEMV_QUICK_SHAPES = ((576, 576), (2048, 2048))
GEMV_STREAM_BYTES = 400 * 2**20
"""Distinct weights streamed per GEMV sample: far beyond any last-level cache."""
GEMM_MS = (1, 8, 32, 64, 128, 512)
GEMM_KN = ((576, 576), (576, 1536), (1536, 576), (2048, 2048), (4096, 4096), (4096, 14336))
"""(k, n) of the calibration GEMMs: SmolLM2's widths, square ones, and one FFN-shaped."""
GEMM_QUICK_MS = (1, 32, 256)
GEMM_QUICK_KN = ((576, 1536), (2048, 2048))
GEMM_WEIGHT_POOL_BYTES = 256 * 2**20
"""Distinct weight copies per GEMM shape, cycled through: beyond the last-level cache."""
SMALL_CALL = (1, 64, 64)
"""m, k, n of the call whose time is the per-call overhead of one library operation."""
VECTOR_ELEMENTS = 2**16
"""256 KiB of fp32: stays in cache."""
TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 256,
}
"""A Llama small enough that every operation of its decode step is dispatch-bound."""
TINY_LAYERS = (2, 10)
TINY_CONTEXT = 16


@dataclass
class CpuMeasurements:
    copy_bytes_per_s: float
    gemvs: list[tuple[int, float]]
    """(bytes moved, seconds per call) of streamed GEMVs."""
    gemms: list[GemmSample]
    call_overhead_s: float
    vector_flops_per_s: float
    dispatch_s: float
    step_s: float
    dispatch_detail: str
    threads: int
    cores: int
    when: str
    torch_version: str


def _each(x: Any, pool: list[Any]) -> list[Any]:
    """x times every weight of `pool` (distinct weights: nothing stays cached)."""
    from torch.nn import functional

    return [functional.linear(x, w) for w in pool]


HOST_STACK = "pytorch-cpu"
"""The stack this host runs (eager PyTorch): its kernel fusion decides how many kernels the
per-kernel dispatch cost is divided over, as replay on the host counts them."""


def _tiny_step(layers: int, repeats: int) -> tuple[float, int]:
    """(seconds per decode step, kernels dartsim models) of a tiny random-weight Llama."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    from dartsim.engine.machine import kernel_fusion
    from dartsim.specs.model import model_spec_from_config
    from dartsim.specs.stack import load_stack_spec
    from dartsim.workload import Execution, StepShape, step_kernels

    raw = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **TINY_LLAMA}
    raw["num_hidden_layers"] = layers
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**raw)).eval()  # type: ignore[arg-type]
    spec = model_spec_from_config(raw, "tiny-llama", "calibration")
    run = Execution(
        fusion=kernel_fusion(load_stack_spec(HOST_STACK))
    )  # kernels as the host's stack runs them
    kernels = len(step_kernels(spec, StepShape.decode(1, TINY_CONTEXT), execution=run))
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=torch.arange(TINY_CONTEXT - 1)[None], past_key_values=cache, use_cache=True)

        def step() -> None:
            model(input_ids=torch.tensor([[1]]), past_key_values=cache, use_cache=True)
            cache.crop(-1)  # drop the appended position again

        return time_call(step, repeats, inner=inner_for(step)).median_s, kernels


def _dispatch(repeats: int) -> tuple[float, float, str]:
    """(seconds per kernel, seconds per step, how) of eager dispatch: decode steps of two
    tiny Llamas that differ only in depth; the slope is per kernel, the rest per step."""
    shallow, deep = TINY_LAYERS
    t_a, k_a = _tiny_step(shallow, repeats)
    t_b, k_b = _tiny_step(deep, repeats)
    per_kernel = max(0.0, (t_b - t_a) / (k_b - k_a))
    per_step = max(0.0, t_a - k_a * per_kernel)
    detail = (
        f"decode steps of tiny random-weight Llamas (width {TINY_LLAMA['hidden_size']}) take "
        f"{t_a * US_PER_S:.0f} us with {shallow} layers ({k_a} kernels as dartsim models them) and "
        f"{t_b * US_PER_S:.0f} us with {deep} layers ({k_b} kernels): the slope per kernel is the issue "
        "cost, the rest the per-step cost"
    )
    return per_kernel, per_step, detail


def copy_bandwidth(repeats: int = 5, quick: bool = False) -> float:
    """Bytes per second read + written copying a large tensor (the peak-bandwidth probe)."""
    import torch

    src = torch.rand(COPY_BYTES // 4 // (8 if quick else 1))
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / time_call(lambda: dst.copy_(src), repeats).median_s


def measure(quick: bool = False, progress: Callable[[str], None] | None = None) -> CpuMeasurements:
    """Run the microbenchmarks (about a minute; `quick`: a few seconds, fewer shapes)."""
    import torch
    import torch.nn.functional as functional

    say = progress or (lambda _msg: None)
    repeats = 3 if quick else 7
    say("memory bandwidth (copy)")
    copy_bw = copy_bandwidth(repeats, quick)

    say("memory efficiency and latency (streaming GEMVs)")
    gemvs = []
    for out_f, in_f in GEMV_QUICK_SHAPES if quick else GEMV_SHAPES:
        size = out_f * in_f * 4
        pool = [
            torch.rand(out_f, in_f) for _ in range(max(2, GEMV_STREAM_BYTES // (4 if quick else 1) // size))
        ]
        row = torch.rand(1, in_f)
        seconds = time_call(functools.partial(_each, row, pool), repeats).median_s
        gemvs.append((size + (in_f + out_f) * 4, seconds / len(pool)))
        del pool

    say("GEMMs")
    gemms = []
    ms, kns = (GEMM_QUICK_MS, GEMM_QUICK_KN) if quick else (GEMM_MS, GEMM_KN)
    for k, n in kns:
        pool = [torch.rand(n, k) for _ in range(max(2, GEMM_WEIGHT_POOL_BYTES // (n * k * 4)))]
        for m in ms:
            x = torch.rand(m, k)
            seconds = time_call(functools.partial(_each, x, pool), repeats).median_s
            gemms.append(GemmSample(m, n, k, FP32, seconds / len(pool)))
        del pool
    sm, sk, sn = SMALL_CALL
    sx, sw = torch.rand(sm, sk), torch.rand(sn, sk)
    call = time_call(lambda: functional.linear(sx, sw), repeats, inner_for(lambda: functional.linear(sx, sw)))

    say("vector unit")
    a, b = torch.rand(VECTOR_ELEMENTS), torch.rand(VECTOR_ELEMENTS)
    out = torch.empty_like(a)
    ops = (
        lambda: torch.mul(a, b, out=out),
        lambda: torch.add(a, b, out=out),
        lambda: torch.exp(a, out=out),
        lambda: torch.rsqrt(b, out=out),
    )
    vector_s = sum(time_call(op, repeats, inner_for(op)).median_s for op in ops)
    vector_rate = len(ops) * VECTOR_ELEMENTS / vector_s

    say("per-kernel dispatch (tiny Llama decode steps)")
    dispatch, per_step, detail = _dispatch(repeats)
    return CpuMeasurements(
        copy_bytes_per_s=copy_bw,
        gemvs=gemvs,
        gemms=gemms,
        call_overhead_s=call.median_s,
        vector_flops_per_s=vector_rate,
        dispatch_s=dispatch,
        step_s=per_step,
        dispatch_detail=detail,
        threads=torch.get_num_threads(),
        cores=os.cpu_count() or 1,
        when=datetime.date.today().isoformat(),
        torch_version=torch.__version__,
    )


def preset(meas: CpuMeasurements, name: str = "cpu-host") -> tuple[dict[str, Any], GemmFit]:
    """A hardware document (YAML units) from the measurements, every field sourced (the
    launch measurements go into the stack document: `stack_document`)."""
    from dartsim.specs.hardware import hardware_spec_from_dict

    where = (
        f"measured on this host ({platform.machine()}, {meas.cores} cores, torch {meas.torch_version}, "
        f"{meas.threads} threads) by dartsim calibrate --device cpu on {meas.when}"
    )
    peak = max(2 * s.m * s.n * s.k / s.seconds for s in meas.gemms)
    stream_bw, startup_s = streaming_line(meas.gemvs, meas.call_overhead_s)
    capped = ""
    latency = next(f for f in FIELDS if f.path == "memory.latency_ns")
    if latency.high is not None and startup_s * NS_PER_S > latency.high:
        capped = (
            f"; the fitted intercept ({startup_s * US_PER_S:.0f} us) exceeded the field's bound and was "
            "capped at it: the GEMV timings were too noisy to estimate a start-up"
        )
        startup_s = latency.high / NS_PER_S
    # The peak is the best rate measured: a copy (read + write) or streaming reads alone,
    # which on some hosts beat a copy (a cap at the copy rate would lose the difference).
    peak_bw = max(meas.copy_bytes_per_s, stream_bw)
    efficiency = float(stream_bw / peak_bw)
    doc: dict[str, Any] = {
        "name": name,
        "description": "this host's CPU running eager PyTorch (fp32), calibrated by dartsim calibrate",
        "calibrated": [
            "memory.peak_bandwidth_gb_per_s",
            "memory.efficiency",
            "compute.tensor_dense_tflop_per_s",
            "compute.vector_tflop_per_s",
            "compute.gemm.efficiency",
            "compute.gemm.k_overhead",
            "compute.gemm.m_overhead",
        ],
        "default_stack": HOST_STACK,
        "memory": {
            "type": "DDR",
            "capacity_gb": _total_memory_gb(),
            "peak_bandwidth_gb_per_s": round(peak_bw / GB, 3),
            "channels": 1,
            "efficiency": round(efficiency, 4),
            "latency_ns": round(startup_s * NS_PER_S, 1),
            "burst_bytes": 64,
            "row_miss_overhead_bytes": 64,
            "source": (
                f"{where}: the larger of a copy of a 256 MiB fp32 tensor (bytes read + written: "
                f"{meas.copy_bytes_per_s / GB:.2f} GB/s) and the GEMV streaming rate below. Capacity: this "
                "host's memory"
            ),
            "efficiency_source": (
                f"measured: fp32 GEMVs streaming distinct weights of {len(meas.gemvs)} sizes; the slope of "
                f"time against bytes is {stream_bw / GB:.2f} GB/s, over the peak"
                + (" (1 by definition: streaming set the peak)" if stream_bw >= meas.copy_bytes_per_s else "")
            ),
            "latency_ns_source": (
                "measured: the intercept of the same line, less one library call "
                f"({meas.call_overhead_s * US_PER_S:.1f} us): the start-up of each streamed matrix before it "
                f"runs at full bandwidth (prefetchers, page walks, threads waking){capped}"
            ),
            "burst_bytes_source": "assumption: 64-byte cache lines",
        },
        "compute": {
            "units": meas.threads,
            "clock_mhz": 2000,
            "tensor_dense_tflop_per_s": {"fp32": round(peak / TFLOP, 5)},
            "vector_tflop_per_s": round(meas.vector_flops_per_s / TFLOP, 6),
            "vector_efficiency": 1.0,
            "source": (
                f"{where}: the best fp32 GEMM rate of {len(meas.gemms)} shapes (tensor); elementwise mul, "
                "add, exp and rsqrt over in-cache tensors, one FLOP per element (vector). Units: threads. "
                "Clock: nominal, unused"
            ),
            "gemm": {
                "tile_m": 1,
                "tile_n": 16,
                "tile_k": 256,
                "efficiency": 1.0,
                "k_overhead": 0.0,
                "m_overhead": 0.0,
                "source": "",
            },
        },
        "on_chip": {
            "sram_mb": 32,
            "weight_prefetch": False,
            "source": (
                "assumption: a last-level cache of the order of tens of MB, filled by the running operation"
            ),
        },
        "noc": {
            "topology": "crossbar",
            "tiles": meas.threads,
            "link_bandwidth_gb_per_s": round(100 * meas.copy_bytes_per_s / GB / meas.threads, 1),
            "hop_latency_ns": 0,
            "source": "assumption: the on-chip network is not a bottleneck on a CPU (100x DRAM bandwidth)",
        },
        "link": {
            "type": "none",
            "bandwidth_gb_per_s_per_direction": 1,
            "latency_us": 0,
            "topology": "pcie",
            "max_devices": 1,
            "source": "assumption: a single host; no tensor parallelism is modelled on it",
        },
        "host_link": {
            "type": "shared-memory",
            "bandwidth_gb_per_s_per_direction": round(meas.copy_bytes_per_s / GB, 3),
            "latency_us": 0,
            "source": "the host is the device: an upload is a memory copy at the measured copy bandwidth",
        },
    }
    hw = hardware_spec_from_dict(_with_gemm_source(doc, "pending"), "calibration")
    fit = fit_gemm(meas.gemms, hw, call_overhead_s=meas.call_overhead_s)
    gemm = doc["compute"]["gemm"]
    gemm.update(efficiency=fit.efficiency, k_overhead=fit.k_overhead, m_overhead=fit.m_overhead)
    shapes = ", ".join(f"{s.m}x{s.k}x{s.n}" for s in meas.gemms)
    gemm["source"] = (
        f"fitted by dartsim.calibrate.gemm_fit to {len(meas.gemms)} measured fp32 GEMMs "
        f"(m x k x n: {shapes}), "
        f"each over distinct weights, with {meas.call_overhead_s * US_PER_S:.1f} us per call "
        f"(a {SMALL_CALL[0]} x "
        f"{SMALL_CALL[1]} x {SMALL_CALL[2]} call); rms log error {fit.rms_log_error:.3f}. "
        "Tiles: assumption (one row at a time, 16-wide vectors)"
    )
    hardware_spec_from_dict(doc, "calibration")  # the document must load as it stands
    return doc, fit


def stack_document(meas: CpuMeasurements, name: str) -> dict[str, Any]:
    """The software-stack document of this host (eager PyTorch on its CPU): the pytorch-cpu
    preset with the measured launch costs."""
    from dartsim.calibrate.timing import measured_stack

    where = (
        f"measured on this host ({platform.machine()}, {meas.cores} cores, torch {meas.torch_version}, "
        f"{meas.threads} threads) by dartsim calibrate --device cpu on {meas.when}"
    )
    values = {
        "launch.host_issue_us": round(meas.dispatch_s * US_PER_S, 3),
        "launch.step_overhead_us": round(meas.step_s * US_PER_S, 3),
    }
    source = f"{where}: {meas.dispatch_detail}. Eager PyTorch on a CPU runs each operation before the next"
    return measured_stack(HOST_STACK, name, values, source)


def streaming_line(gemvs: list[tuple[int, float]], call_overhead_s: float) -> tuple[float, float]:
    """(bytes/s, start-up s): the least-squares line seconds = start + bytes / rate through
    the GEMV samples (relative errors weighted equally), the per-call cost taken off."""
    import numpy as np

    size = np.array([b for b, _ in gemvs], dtype=float)
    seconds = np.array([t for _, t in gemvs], dtype=float) - call_overhead_s
    weights = 1.0 / seconds
    design = np.stack([np.ones_like(size), size], axis=1) * weights[:, None]
    (start, per_byte), *_ = np.linalg.lstsq(design, seconds * weights, rcond=None)
    if per_byte <= 0:
        raise ValueError("streaming GEMVs got faster with size: the measurement is unusable")
    return float(1.0 / per_byte), max(0.0, float(start))


def _with_gemm_source(doc: dict[str, Any], text: str) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    out["compute"]["gemm"]["source"] = text
    return out


def _total_memory_gb() -> float:
    """This host's physical memory in GB (1e9), or 1 when it cannot be read."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1.0
    return round(pages * size / GB, 1)
