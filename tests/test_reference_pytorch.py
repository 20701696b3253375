"""The PyTorch reference path: dartsim's per-kernel matmul FLOPs and weight bytes equal
what PyTorch counts on real transformers layers at the full Llama-3.1 dimensions.

Layers are built on the meta device (shapes only, no memory) and run under
torch.utils.flop_counter.FlopCounterMode with eager attention and a KV cache, so every
matmul of a decode step is counted from the real tensor shapes.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig
from transformers.cache_utils import DynamicCache
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from dartsim.specs.dtypes import DTYPES, tensor_bytes
from dartsim.specs.model import ModelSpec, models_cfg_dir
from dartsim.workload import Precision, StepShape, TensorKind, layer_kernels

BATCH = 4
CONTEXT = 128
PREFIX = "LlamaDecoderLayer"


def _meta_layer(spec: ModelSpec, kept: int | None) -> LlamaDecoderLayer:
    config = AutoConfig.from_pretrained(models_cfg_dir() / f"{spec.name}.json")
    config._attn_implementation = "eager"
    with torch.device("meta"):
        layer = LlamaDecoderLayer(config, layer_idx=0).to(torch.float16)
        if kept is not None:  # the compact form of a mask: slice k rows/columns out
            d = spec.hidden_size
            layer.mlp.gate_proj = nn.Linear(d, kept, bias=False, dtype=torch.float16)
            layer.mlp.up_proj = nn.Linear(d, kept, bias=False, dtype=torch.float16)
            layer.mlp.down_proj = nn.Linear(kept, d, bias=False, dtype=torch.float16)
    return layer


def _counted_flops(spec: ModelSpec, kept: int | None) -> dict[str, int]:
    """FLOPs per module of one decode step: BATCH sequences, CONTEXT positions each."""
    layer = _meta_layer(spec, kept)
    cache = DynamicCache()
    hd = spec.head_dim
    with torch.device("meta"):
        past = torch.empty(BATCH, spec.num_kv_heads, CONTEXT - 1, hd, dtype=torch.float16)
        cache.update(past, past.clone(), 0)
        hidden = torch.empty(BATCH, 1, spec.hidden_size, dtype=torch.float16)
        cos = torch.empty(BATCH, 1, hd, dtype=torch.float16)
        counter = FlopCounterMode(display=False)
        with counter:
            layer(
                hidden,
                attention_mask=None,
                position_embeddings=(cos, cos.clone()),
                past_key_values=cache,
                use_cache=True,
            )
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def _dartsim_flops(spec: ModelSpec, kept: int | None) -> dict[str, int]:
    kernels = layer_kernels(spec, StepShape.decode(BATCH, CONTEXT), 0, kept_neurons=kept)
    return {k.name: k.flops_matmul for k in kernels}


@pytest.mark.parametrize("model", ["llama8b", "llama70b"])
@pytest.mark.parametrize("keep_fraction", [None, 0.3, 0.05])
def test_matmul_flops_per_kernel_equal_flop_counter(
    model: str, keep_fraction: float | None, request: pytest.FixtureRequest
) -> None:
    spec: ModelSpec = request.getfixturevalue(model)
    kept = None if keep_fraction is None else round(keep_fraction * spec.intermediate_size)
    counted = _counted_flops(spec, kept)
    ours = _dartsim_flops(spec, kept)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert ours[proj] == counted[f"{PREFIX}.self_attn.{proj}"], proj
    projections = sum(counted[f"{PREFIX}.self_attn.{p}"] for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
    # What self_attn does outside its Linear modules: QK^T and PV over the cache.
    assert ours["attention"] == counted[f"{PREFIX}.self_attn"] - projections
    assert ours["gate_up_swiglu"] == (counted[f"{PREFIX}.mlp.gate_proj"] + counted[f"{PREFIX}.mlp.up_proj"])
    assert ours["down_proj"] == counted[f"{PREFIX}.mlp.down_proj"]
    assert sum(ours.values()) == counted[PREFIX]


_WEIGHT_OF_MODULE = {
    "self_attn.q_proj.weight": "W_q",
    "self_attn.k_proj.weight": "W_k",
    "self_attn.v_proj.weight": "W_v",
    "self_attn.o_proj.weight": "W_o",
    "mlp.gate_proj.weight": "W_gate",
    "mlp.up_proj.weight": "W_up",
    "mlp.down_proj.weight": "W_down",
}


@pytest.mark.parametrize("model", ["llama8b", "llama70b"])
@pytest.mark.parametrize("dtype_name", sorted(DTYPES))
@pytest.mark.parametrize("keep_fraction", [None, 0.3])
def test_weight_bytes_equal_parameter_sizes(
    model: str, dtype_name: str, keep_fraction: float | None, request: pytest.FixtureRequest
) -> None:
    spec: ModelSpec = request.getfixturevalue(model)
    kept = None if keep_fraction is None else round(keep_fraction * spec.intermediate_size)
    layer = _meta_layer(spec, kept)
    dtype = DTYPES[dtype_name]
    kernels = layer_kernels(
        spec, StepShape.decode(1, 16), 0, kept_neurons=kept, precision=Precision(weight=dtype)
    )
    ours = {
        t.name: t.bytes
        for k in kernels
        for t in k.reads
        if t.kind is TensorKind.WEIGHT and t.name.startswith("W_")
    }
    params = dict(layer.named_parameters())
    for param_name, tensor_name in _WEIGHT_OF_MODULE.items():
        assert ours[tensor_name] == tensor_bytes(params[param_name].numel(), dtype), tensor_name
    # Norm weights stay at the activation precision.
    norm_bytes = sum(t.bytes for k in kernels for t in k.reads if t.name.endswith("layernorm.weight"))
    expected = sum(
        tensor_bytes(p.numel(), Precision().activation) for n, p in params.items() if "layernorm" in n
    )
    assert norm_bytes == expected
