"""Predicted against measured on this machine's CPU: real PyTorch execution of the same
work dartsim models, timed, beside dartsim's prediction on a hardware file of this host.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dartsim.calibrate.timing import Timing, time_call
from dartsim.engine.machine import device
from dartsim.engine.replay_config import ReplayConfig
from dartsim.engine.sim import simulate_step
from dartsim.specs.dtypes import FP32
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec, load_model_spec
from dartsim.specs.stack import default_stack
from dartsim.workload import Execution, Precision, StepShape, kept_count, layer_kernels, step_kernels

DESCRIPTION = """The cases (none of them is a calibration microbenchmark):
- the bundled SmolLM2-135M (a Hugging Face LlamaForCausalLM, fp32): prefill at several
  prompt lengths and a decode step at several contexts, logits for the last token only;
- one decoder layer (transformers' LlamaDecoderLayer, random fp32 weights) at the real
  widths of Llama-3.1-8B and 70B, dense and with its FFN compacted to 50% and 30% of its
  neurons (a smaller contiguous FFN, as DART's compact path runs it): prefill of a short
  prompt and a decode step at a fixed context.
Each case is timed as the median of repeats after a warm-up run; the spread (min to max)
is reported beside it. A single layer called directly does no per-step host work, so its
prediction leaves out `launch.step_overhead_us`."""
PRECISION = Precision(weight=FP32, activation=FP32, kv_cache=FP32)
SMOL_PREFILL = (32, 128, 512)
SMOL_DECODE = (64, 512, 2048)
LAYER_MODELS = ("llama-3.1-8b", "llama-3.1-70b")
LAYER_KEEPS = (1.0, 0.5, 0.3)
LAYER_PREFILL = 64
LAYER_DECODE = 512
QUICK_SMOL_PREFILL = (32,)
QUICK_SMOL_DECODE = (64,)
QUICK_LAYER_MODELS = ("llama-3.2-3b",)
QUICK_LAYER_KEEPS = (1.0, 0.5)
QUICK_LAYER_PREFILL = 16
QUICK_LAYER_DECODE = 64
INIT_RANGE = 0.02
"""Random weights are uniform in [-0.02, 0.02] (no denormals, no infinities)."""


@dataclass(frozen=True)
class Case:
    """One piece of work, timed for real and predicted."""

    name: str
    group: str
    run: Callable[[], Callable[[], object]]
    """Builds the work (outside the timing) and returns the call to time."""
    predict: Callable[[HardwareSpec], float]


@dataclass(frozen=True)
class Result:
    name: str
    group: str
    measured: Timing
    predicted_s: float

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted_s - self.measured.median_s) / self.measured.median_s


def _execution(hw: HardwareSpec) -> Execution:
    """How the host's stack runs a step (its kernel fusion), at fp32."""
    config = ReplayConfig(precision=PRECISION)
    return config.execution(config.device(hw))


def _predict_step(spec: ModelSpec, shape: StepShape, hw: HardwareSpec) -> float:
    kernels = step_kernels(spec, shape, precision=PRECISION, execution=_execution(hw))
    return simulate_step(kernels, device(hw), phase=shape.phase).time_s


def _predict_layer(spec: ModelSpec, shape: StepShape, kept: int, hw: HardwareSpec) -> float:
    stack = default_stack(hw)
    no_step = dataclasses.replace(stack, launch=dataclasses.replace(stack.launch, step_overhead_s=0.0))
    kernels = layer_kernels(spec, shape, 0, kept, PRECISION, execution=_execution(hw))
    return simulate_step(kernels, device(hw, no_step), phase=shape.phase).time_s


class _Smol:
    """The bundled model, loaded once for all of its cases."""

    def __init__(self) -> None:
        self._loaded: Any = None

    def get(self) -> Any:
        if self._loaded is None:
            from dartsim.record.model import load_bundled

            self._loaded = load_bundled("cpu")
        return self._loaded


def _smol_prefill(smol: _Smol, tokens: int) -> Callable[[], object]:
    import torch

    model = smol.get().model
    ids = torch.arange(tokens)[None] % 1000 + 100

    def call() -> object:
        with torch.no_grad():
            return model(input_ids=ids, use_cache=True, logits_to_keep=1)

    return call


def _smol_decode(smol: _Smol, context: int) -> Callable[[], object]:
    import torch
    from transformers.cache_utils import DynamicCache

    model = smol.get().model
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=torch.arange(context - 1)[None] % 1000 + 100, past_key_values=cache, use_cache=True)
    token = torch.tensor([[101]])

    def call() -> object:
        with torch.no_grad():
            out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.crop(-1)  # back to context - 1 cached positions for the next repeat
        return out

    return call


def _layer(spec: ModelSpec, kept: int, phase: str, length: int) -> Callable[[], object]:
    """One LlamaDecoderLayer of `spec`'s widths with a `kept`-neuron FFN, random weights."""
    import torch
    from transformers import LlamaConfig
    from transformers.cache_utils import DynamicCache
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(  # type: ignore[call-arg]
        hidden_size=spec.hidden_size,
        intermediate_size=kept,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        num_hidden_layers=1,
        rms_norm_eps=1e-5,
        max_position_embeddings=max(spec.max_position_embeddings, length + 1),
        attn_implementation="sdpa",
    )
    with torch.device("meta"):
        layer = LlamaDecoderLayer(config, layer_idx=0)
    layer = layer.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in layer.parameters():
            param.uniform_(-INIT_RANGE, INIT_RANGE, generator=gen)
    rotary = LlamaRotaryEmbedding(config)
    d = spec.hidden_size
    if phase == "prefill":
        x = torch.rand(1, length, d, generator=gen) - 0.5
        positions = torch.arange(length)[None]
        cache = None
    else:
        x = torch.rand(1, 1, d, generator=gen) - 0.5
        positions = torch.tensor([[length - 1]])
        cache = DynamicCache()
        shape = (1, spec.num_kv_heads, length - 1, spec.head_dim)
        cache.update(torch.rand(shape, generator=gen), torch.rand(shape, generator=gen), 0)
    embeddings = rotary(x, positions)

    def call() -> object:
        with torch.no_grad():
            out = layer(x, position_ids=positions, past_key_values=cache, use_cache=cache is not None,
                        position_embeddings=embeddings)  # fmt: skip
        if cache is not None:
            cache.crop(-1)
        return out

    return call


def cases(quick: bool = False) -> list[Case]:
    """Every case, in the order they run (the quick set for tests: tiny and few)."""
    smol = _Smol()
    spec = load_model_spec("smollm2-135m")
    prefill_lens = QUICK_SMOL_PREFILL if quick else SMOL_PREFILL
    decode_ctx = QUICK_SMOL_DECODE if quick else SMOL_DECODE
    out: list[Case] = []
    for n in prefill_lens:
        out.append(
            Case(
                f"smollm2-135m prefill {n} tokens",
                "smollm2",
                functools.partial(_smol_prefill, smol, n),
                functools.partial(_predict_step, spec, StepShape.prefill(1, n)),
            )
        )
    for c in decode_ctx:
        out.append(
            Case(
                f"smollm2-135m decode at context {c}",
                "smollm2",
                functools.partial(_smol_decode, smol, c),
                functools.partial(_predict_step, spec, StepShape.decode(1, c)),
            )
        )
    models = QUICK_LAYER_MODELS if quick else LAYER_MODELS
    keeps = QUICK_LAYER_KEEPS if quick else LAYER_KEEPS
    prefill = QUICK_LAYER_PREFILL if quick else LAYER_PREFILL
    context = QUICK_LAYER_DECODE if quick else LAYER_DECODE
    for name in models:
        layer_spec = load_model_spec(name)
        for keep in keeps:
            kept = kept_count(keep, layer_spec.intermediate_size)
            label = "dense" if keep == 1.0 else f"FFN compact {keep:.0%}"
            for phase, length, shape in (
                ("prefill", prefill, StepShape.prefill(1, prefill)),
                ("decode", context, StepShape.decode(1, context)),
            ):
                what = f"{length} tokens" if phase == "prefill" else f"at context {length}"
                out.append(
                    Case(
                        f"{name} layer {phase} {what}, {label}",
                        "layer",
                        functools.partial(_layer, layer_spec, kept, phase, length),
                        functools.partial(_predict_layer, layer_spec, shape, kept),
                    )
                )
    return out


def run_cases(
    selected: Sequence[Case], hw: HardwareSpec, repeats: int, progress: Callable[[str], None] | None = None
) -> list[Result]:
    """Time each case for real and predict it on `hw`."""
    import gc

    results = []
    for i, case in enumerate(selected):
        if progress:
            progress(f"[{i + 1}/{len(selected)}] {case.name}")
        call = case.run()
        measured = time_call(call, repeats)
        del call
        gc.collect()
        results.append(Result(case.name, case.group, measured, case.predict(hw)))
    return results
