"""One device as the engine sees it: the hardware and the software stack running on it,
effective rates in SI units, the run's choices (launch mode, weight prefetch) resolved,
and what each kernel needs of every resource.

Rules (docs/engine.md says why each holds):
- DRAM serves at peak bandwidth x `memory.efficiency`; a gathered row of b bytes costs
  ceil(b / burst) bursts plus one row-miss overhead.
- Every byte a kernel moves crosses the on-chip network once, between the memory
  controllers and the compute tiles (weights streamed ahead of time cross it while being
  streamed). DRAM and network are stages of one pipeline: a transfer occupies it for the
  longer of its DRAM time and its network time.
- Latency (DRAM load-to-use plus the network's hops) delays the data of a transfer; it
  occupies neither DRAM nor network.
- Matmul work runs on the tensor unit at its shape's efficiency (engine/efficiency.py;
  fused attention at the stack's prefill efficiency for its compute format), elementwise
  work on the vector unit; within one kernel the two overlap.
- A decode attention kernel (one new token per sequence) streams the KV cache at the
  stack's decode_bandwidth_efficiency of the achievable bandwidth (times gqa_efficiency
  when query heads share KV heads), and pays the stack's fixed decode_fixed_us on top
  (split-KV merge, prologue): short contexts stream below the asymptote.
- A strided gather (k of every n elements picked, a [d, m] W_down) touches every burst
  holding a picked element: the expected share of bursts touched is 1 - (1 - k/n)^e for e
  elements per burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dartsim.engine.collectives import collective_time
from dartsim.engine.efficiency import matmul_efficiency
from dartsim.errors import UserError
from dartsim.names import LAUNCH_MODES
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.stack import StackSpec, default_stack
from dartsim.units import BITS_PER_BYTE
from dartsim.workload.execution import KernelFusion
from dartsim.workload.kernels import Kernel, TensorAccess, TensorKind


@dataclass(frozen=True)
class Device:
    """What the engine needs of one device and the stack on it, in SI units."""

    hw: HardwareSpec
    stack: StackSpec
    """With the run's launch mode applied (`launch_mode` is stack.launch.mode)."""
    launch_mode: str
    prefetch: bool
    dram_bytes_per_s: float
    noc_bytes_per_s: float
    memory_latency_s: float
    """DRAM load-to-use latency plus the on-chip network's average hops."""

    @property
    def sram_bytes(self) -> int:
        return self.hw.on_chip.sram_bytes


def noc_capacity(hw: HardwareSpec) -> tuple[float, float]:
    """(bytes/s, latency s) of the on-chip network for traffic from the memory
    controllers at its edge to the compute tiles.

    crossbar: every tile has its own port; bandwidth tiles x link, one hop.
    ring: bidirectional, the bisection (four links) limits; average tiles/4 hops.
    mesh: memory controllers on two opposite edges, the bisection of 2 x min(rows, cols)
    links limits; average (rows + cols) / 3 hops.
    """
    noc = hw.noc
    link = noc.link_bandwidth_bytes_per_s
    if noc.topology == "crossbar":
        return noc.tiles * link, noc.hop_latency_s
    if noc.topology == "ring":
        return 4 * link, noc.hop_latency_s * max(1.0, noc.tiles / 4)
    rows, cols = noc.mesh_rows or 1, noc.mesh_cols or 1
    return 2 * min(rows, cols) * link, noc.hop_latency_s * (rows + cols) / 3


def device(
    hw: HardwareSpec,
    stack: StackSpec | None = None,
    launch: str | None = None,
    prefetch: bool | None = None,
) -> Device:
    """The engine's view of `hw` running `stack` (the hardware's default stack, with the
    values fitted on this device, when None); `launch` overrides the stack's launch mode
    and `prefetch` the hardware's weight streaming."""
    sw = default_stack(hw) if stack is None else stack
    mode = sw.launch.mode if launch is None else launch
    if mode not in LAUNCH_MODES:
        raise UserError(f"launch mode must be one of {', '.join(LAUNCH_MODES)}, got {mode!r}")
    if mode != sw.launch.mode:
        sw = replace(sw, launch=replace(sw.launch, mode=mode))
    noc_bw, noc_lat = noc_capacity(hw)
    return Device(
        hw=hw,
        stack=sw,
        launch_mode=mode,
        prefetch=hw.on_chip.weight_prefetch if prefetch is None else prefetch,
        dram_bytes_per_s=hw.memory.achievable_bandwidth_bytes_per_s,
        noc_bytes_per_s=noc_bw,
        memory_latency_s=hw.memory.latency_s + noc_lat,
    )


def gather_efficiency(row_bytes: int, burst_bytes: int, row_miss_overhead_bytes: int) -> float:
    """Fraction of DRAM bandwidth left when reading rows of `row_bytes` at random places:
    each row rounds up to whole bursts and pays one row-miss overhead."""
    bursts = math.ceil(row_bytes / burst_bytes) * burst_bytes
    return row_bytes / (bursts + row_miss_overhead_bytes)


def strided_efficiency(picked: tuple[int, int], element_bits: int, burst_bytes: int) -> float:
    """Fraction of DRAM bandwidth left when reading k of every n elements at random
    positions: every burst holding a picked element is read whole."""
    k, n = picked
    per_burst = max(1, burst_bytes * BITS_PER_BYTE // element_bits)
    f = k / n
    if f >= 1:
        return 1.0
    touched = 1.0 - (1.0 - f) ** per_burst  # share of bursts holding at least one pick
    return min(1.0, f / touched)


def read_efficiency(tensor: TensorAccess, hw: HardwareSpec) -> float:
    """DRAM efficiency of reading `tensor` (1 for a stream, less for gathers)."""
    mem = hw.memory
    if tensor.picked is not None:
        return strided_efficiency(tensor.picked, tensor.dtype.bits, mem.burst_bytes)
    if tensor.row_bytes is not None:
        return gather_efficiency(tensor.row_bytes, mem.burst_bytes, mem.row_miss_overhead_bytes)
    return 1.0


@dataclass(frozen=True)
class KernelCost:
    """What one kernel needs of each resource on its own, before any queueing (seconds)."""

    weight_bytes: int
    """Weights the kernel reads (what a streamer may load ahead of time)."""
    other_bytes: int
    weight_dram_s: float
    other_dram_s: float
    weight_noc_s: float
    other_noc_s: float
    compute_s: float
    link_s: float
    host_s: float
    fixed_s: float = 0.0
    """Time the kernel takes on top of its slowest resource (decode attention's fixed part)."""

    @property
    def dram_s(self) -> float:
        return self.weight_dram_s + self.other_dram_s

    @property
    def noc_s(self) -> float:
        return self.weight_noc_s + self.other_noc_s

    @property
    def memory_path_s(self) -> float:
        """Occupancy of the DRAM-to-tiles pipeline by all of the kernel's bytes."""
        return max(self.dram_s, self.noc_s)


def compute_time(kernel: Kernel, dev: Device) -> float:
    """Arithmetic time: matmul FLOPs on the tensor unit at the shape's efficiency,
    vector FLOPs on the vector unit, the two overlapping. A 2:4-sparse weight's matmul
    runs at the device's 2:4 sparse peak where the hardware file lists one (its FLOPs are
    still counted dense: the work the sparse unit skips is not reported as done)."""
    c = dev.hw.compute
    tensor = 0.0
    if kernel.flops_matmul:
        if kernel.compute_dtype is None:
            raise ValueError(f"kernel {kernel.name} has matmul FLOPs but no compute format")
        if kernel.shape is None:
            eff = c.gemm.efficiency
        else:
            asymptote = dev.stack.attention.prefill_efficiency_for(kernel.compute_dtype.name)
            eff = matmul_efficiency(kernel.shape, c, asymptote)
        peak = dev.hw.tensor_flops_per_s(kernel.compute_dtype)
        if kernel.sparse_2to4:
            peak = dev.hw.sparse_2to4_flops_per_s(kernel.compute_dtype) or peak
        tensor = kernel.flops_matmul / (peak * eff)
    vector = kernel.flops_vector / (c.vector_flops_per_s * c.vector_efficiency)
    return max(tensor, vector)


def decode_attention(kernel: Kernel) -> bool:
    return kernel.shape is not None and kernel.shape.attention and kernel.shape.decode


def kv_stream_efficiency(kernel: Kernel, dev: Device) -> float:
    """Share of the achievable bandwidth a decode attention kernel reads the KV cache at."""
    att = dev.stack.attention
    assert kernel.shape is not None
    grouped = kernel.shape.m > 1  # several query heads per KV head (GQA)
    return att.decode_bandwidth_efficiency * (att.gqa_efficiency if grouped else 1.0)


def kernel_cost(kernel: Kernel, dev: Device) -> KernelCost:
    """Resource times of `kernel` on `dev`."""
    weight_bytes = other_bytes = 0
    weight_s = other_s = 0.0
    decode = decode_attention(kernel)
    kv_eff = kv_stream_efficiency(kernel, dev) if decode else 1.0
    for tensor in kernel.reads:
        size = tensor.bytes
        eff = read_efficiency(tensor, dev.hw)
        if tensor.kind is TensorKind.KV_CACHE:
            eff *= kv_eff
        seconds = size / (dev.dram_bytes_per_s * eff)
        if tensor.kind is TensorKind.WEIGHT:
            weight_bytes += size
            weight_s += seconds
        else:
            other_bytes += size
            other_s += seconds
    for tensor in kernel.writes:
        other_bytes += tensor.bytes
        other_s += tensor.bytes / dev.dram_bytes_per_s
    host = 0.0
    if kernel.host_bytes:
        link = dev.hw.host_link
        host = link.latency_s + kernel.host_bytes / link.bandwidth_bytes_per_s_per_direction
    return KernelCost(
        weight_bytes=weight_bytes,
        other_bytes=other_bytes,
        weight_dram_s=weight_s,
        other_dram_s=other_s,
        weight_noc_s=weight_bytes / dev.noc_bytes_per_s,
        other_noc_s=other_bytes / dev.noc_bytes_per_s,
        compute_s=compute_time(kernel, dev),
        link_s=collective_time(kernel, dev.hw.link, dev.stack.allreduce),
        host_s=host,
        fixed_s=dev.stack.attention.decode_fixed_s if decode else 0.0,
    )


def body_time(cost: KernelCost, dev: Device) -> float:
    """A kernel's own time once started: its slowest resource (the memory path with its
    latency, compute, link, host upload), plus its fixed part."""
    moved = cost.weight_bytes + cost.other_bytes
    memory = cost.memory_path_s + dev.memory_latency_s if moved else 0.0
    return cost.fixed_s + max(memory, cost.compute_s, cost.link_s, cost.host_s)


def kernel_fusion(stack: StackSpec) -> KernelFusion:
    """The workload model's kernel fusion for what `stack` fuses."""
    f = stack.fusion
    return KernelFusion(
        qkv_fused=f.qkv,
        swiglu_fused=f.gate_up == "one_kernel",
        gate_up_merged=f.gate_up == "merged_gemm",
        norm_residual=f.norm_residual,
        activation_quant=f.activation_quant,
        down_input_major=f.down_layout == "input-major",
    )
