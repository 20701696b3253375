"""The software-stack file schema: every field once, with its unit, plausible range and
default (the hardware file's Field table, for what the serving software does).

A stack file says how the software runs a model on a device: how kernels are launched
(CUDA graphs or host-issued, and what each costs), the host work every step serialises
with, the all-reduce implementation and its fixed cost per call, which operations run as
one kernel, the attention kernels and their efficiencies, how prefills are scheduled, and
how much device memory the framework keeps for itself. Hardware files hold none of this.
"""

from __future__ import annotations

from dartsim.names import ALLREDUCE_ALGORITHMS, LAUNCH_MODES
from dartsim.specs.hardware_schema import REQUIRED, Field
from dartsim.units import KB, US

PREFILL_SCHEDULING = ("batched", "chunked", "sequential")
"""batched: the prompts of a batch in one step (their tokens summed, attention per
sequence); chunked: the same in steps of at most `prefill.chunk_tokens` tokens;
sequential: one prompt per step, one after another."""
DOWN_LAYOUTS = ("neuron-major", "input-major")
"""How W_down is stored: neuron-major keeps each FFN neuron's d weights contiguous (the
transpose of nn.Linear's weight, as gathering implementations store it); input-major is
nn.Linear's [d, m], where a neuron's weights are strided across d rows."""
GATE_UP_LAYOUTS = ("one_kernel", "merged_gemm", "separate")
"""How the FFN's gate and up projections and SwiGLU run: one_kernel (a GEMM with the
activation in its epilogue); merged_gemm (one GEMM of both, then an activation kernel:
TensorRT-LLM's gated-MLP horizontal fusion, vLLM's MergedColumnParallelLinear +
SiluAndMul); separate (two GEMMs and an activation kernel: Hugging Face's modules)."""
ATTENTION_FORMATS = ("fp16", "bf16", "fp8", "fp32")

_US_HIGH = "host and device costs of a step are microseconds to milliseconds"


def _us(path: str, default: object = REQUIRED, high: float = 1e5, why: str = _US_HIGH) -> Field:
    return Field(
        path, path.replace("_us", "_s"), "number", US, 0.0, high, why, default=default, low_open=False
    )


def _frac(path: str, default: object = REQUIRED) -> Field:
    return Field(
        path, path, "fraction", 1.0, 0.0, 1.0, "an efficiency factor lies in (0, 1]", default=default
    )


FIELDS: tuple[Field, ...] = (
    Field("name", "name", "text"),
    Field("description", "description", "text"),
    # how kernels are launched
    Field("launch.mode", "launch.mode", "choice", choices=LAUNCH_MODES),
    _us("launch.host_issue_us"),
    _us("launch.kernel_gap_us"),
    _us("launch.graph_launch_us", default=0.0),
    _us("launch.step_overhead_us"),
    Field("launch.synchronous", "launch.synchronous", "flag", default=False),
    Field("launch.prefill_graphs", "launch.prefill_graphs", "flag", default=False),
    Field(
        "launch.ops_per_kernel",
        "launch.ops_per_kernel",
        "number",
        1.0,
        1.0,
        100.0,
        "a modelled kernel stands for at least one and at most tens of framework kernels",
        default=1.0,
        low_open=False,
    ),
    # collectives
    Field("allreduce.algorithm", "allreduce.algorithm", "choice", choices=ALLREDUCE_ALGORITHMS),
    _us("allreduce.call_us", high=1e4, why="a collective's fixed cost is tens of microseconds"),
    Field(
        "allreduce.one_shot_max_kb",
        "allreduce.one_shot_max_bytes",
        "number",
        KB,
        0.0,
        1e7,
        "one-shot all-reduce suits messages of kilobytes to megabytes",
        default=0.0,
        low_open=False,
    ),
    # which operations run as one kernel
    Field("fusion.qkv", "fusion.qkv", "flag", default=False),
    Field("fusion.gate_up", "fusion.gate_up", "choice", choices=GATE_UP_LAYOUTS, default="one_kernel"),
    Field("fusion.norm_residual", "fusion.norm_residual", "flag", default=False),
    Field("fusion.activation_quant", "fusion.activation_quant", "flag", default=True),
    Field("fusion.down_layout", "fusion.down_layout", "choice", choices=DOWN_LAYOUTS, default="neuron-major"),
    # attention kernels
    Field("attention.family", "attention.family", "text"),
    Field(
        "attention.prefill_efficiency",
        "attention.prefill_efficiency",
        "fractions",
        1.0,
        0.0,
        1.0,
        "an efficiency factor lies in (0, 1]",
    ),
    Field("attention.fp8_compute", "attention.fp8_compute", "flag", default=False),
    _frac("attention.decode_bandwidth_efficiency", default=1.0),
    _frac("attention.gqa_efficiency", default=1.0),
    _us(
        "attention.decode_fixed_us", default=0.0, high=1e4, why="a decode attention kernel takes microseconds"
    ),
    # prefill scheduling and requests
    Field("prefill.scheduling", "prefill.scheduling", "choice", choices=PREFILL_SCHEDULING),
    Field(
        "prefill.chunk_tokens",
        "prefill.chunk_tokens",
        "integer",
        1.0,
        1,
        1 << 20,
        "a chunk holds at most a million tokens",
        default=None,
        low_open=False,
    ),
    _us("prefill.request_overhead_us", default=0.0, high=1e7, why="a request's handling takes milliseconds"),
    # device memory the framework keeps
    Field(
        "memory.reserve_fraction",
        "memory.reserve_fraction",
        "number",
        1.0,
        0.0,
        0.9,
        "a framework keeps well under all of the device memory",
        default=0.0,
        low_open=False,
    ),
)

SECTIONS = ("launch", "allreduce", "fusion", "attention", "prefill", "memory")
TOP_KEYS = ("name", "description", "calibrated", "devices", *SECTIONS)
REQUIRED_SOURCES = ("launch.kernel_gap_us", "launch.step_overhead_us")
"""Fields that must cite their own source beside their section's (`<field>_source`)."""
CALIBRATABLE = tuple(f.path for f in FIELDS if f.kind in ("number", "fraction"))
"""Fields a fit may change (those a stack lists under `calibrated`), per device under
`devices`."""
