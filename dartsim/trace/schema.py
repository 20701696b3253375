"""Trace format v2: only plain tensors, numbers, strings, booleans, lists and dicts, so a
trace loads with `torch.load(..., weights_only=True)` and never executes code.

Layout (S steps, E mask epochs, L layers, m FFN neurons, C drift checks, R re-triggers):

- `format` ("dartsim-trace"), `schema_version` (2; version 1 still loads), `complete`, `status`, `synthetic`,
  `created_by`, `seed`, `versions` {dartsim, torch, transformers, python}.
- `model`: name, model_type, num_layers, hidden_size, intermediate_size, num_heads,
  num_kv_heads, head_dim, vocab_size, max_position_embeddings, source, random_weights,
  dtype, device.
- `generation`: prompt, prompt_len, generated_len, stopped_at_eos, max_new_tokens,
  min_new_tokens, ignore_eos, temperature, chat_template, text, prompt_ids [P],
  generated_ids [G].
- `dart`: every DART parameter, plus mode (dart, static, dense) and mask_apply; only in
  traces of the `dart` policy (and every v1 trace).
- `policy` (v2): name (policies/__init__.py POLICIES), params {name: number, string or
  bool}, head_masks [L, H] bool (attention heads in force while a mask epoch is; all true
  unless the policy prunes heads), weight_format (dense, bitmap, csr, 2:4: how pruned
  decoder weights are stored), weight_density [L] float64 (fraction of each layer's
  decoder weights kept). A v1 trace reads as policy `dart` (or `dense` for mode dense).
- `steps`: phase [S] uint8 (index into PHASES), tokens [S], context_len [S] (sequence
  length after the step), epoch [S] (mask epoch in force, -1 = FFN dense), time_s [S].
- `epochs`: first_step, last_step, trigger_step (-1 for the first mask), reference_tokens
  [E]; kept [E, L]; keep_ratio, s_bar, importance, depth, pruning [E, L] (float64);
  masks [E, L, ceil(m/8)] uint8 (bit-packed, little bit order: neuron i is bit i % 8 of
  byte i // 8); build_time_s [E].
- `drift_checks`: step [C] and similarity, mu, sigma, threshold [C] (float64), counter
  [C], detected and fired [C] (bool).
- `retriggers`: step [R] (the step whose check fired), epoch [R] (the epoch it led to,
  -1 if the run ended first).
- `figure5`: window (tokens) and similarity [G'] (float64, one per decode step: cosine of
  the last `window` attention outputs' mean to the first reference's mean; NaN until
  available).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dartsim.specs.model import ModelSpec, model_spec_from_config

FORMAT_NAME = "dartsim-trace"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
WEIGHT_FORMATS = ("dense", "bitmap", "csr", "2:4")
"""How a policy's pruned decoder weights are stored (workload/sparse_storage.py)."""
PHASES = ("prefill", "decode")

_MODEL_INT_FIELDS = (
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
STEP_DTYPES = {
    "phase": torch.uint8,
    "tokens": torch.int32,
    "context_len": torch.int32,
    "epoch": torch.int32,
    "time_s": torch.float64,
}
EPOCH_VECTOR_DTYPES = {
    "first_step": torch.int32,
    "last_step": torch.int32,
    "trigger_step": torch.int32,
    "reference_tokens": torch.int32,
    "build_time_s": torch.float64,
}
EPOCH_MATRIX_DTYPES = {
    "kept": torch.int32,
    "keep_ratio": torch.float64,
    "s_bar": torch.float64,
    "importance": torch.float64,
    "depth": torch.float64,
    "pruning": torch.float64,
}
CHECK_DTYPES = {
    "step": torch.int32,
    "similarity": torch.float64,
    "mu": torch.float64,
    "sigma": torch.float64,
    "threshold": torch.float64,
    "counter": torch.int32,
    "detected": torch.bool,
    "fired": torch.bool,
}
RETRIGGER_DTYPES = {"step": torch.int32, "epoch": torch.int32}


def model_section(
    spec: ModelSpec, source: str, random_weights: bool, dtype: str, device: str
) -> dict[str, Any]:
    """The `model` section of a trace for `spec`."""
    return {
        "name": spec.name,
        "model_type": spec.model_type,
        "num_layers": spec.num_layers,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_heads": spec.num_heads,
        "num_kv_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "source": source,
        "random_weights": random_weights,
        "dtype": dtype,
        "device": device,
    }


def model_spec_of(trace: dict[str, Any], where: str | None = None) -> ModelSpec:
    """The model a trace was recorded on, from the dimensions it records; errors name
    `where` (the trace file) when given."""
    m = trace["model"]
    config = {
        "model_type": m["model_type"],
        "num_hidden_layers": m["num_layers"],
        "hidden_size": m["hidden_size"],
        "intermediate_size": m["intermediate_size"],
        "num_attention_heads": m["num_heads"],
        "num_key_value_heads": m["num_kv_heads"],
        "head_dim": m["head_dim"],
        "vocab_size": m["vocab_size"],
        "max_position_embeddings": m["max_position_embeddings"],
    }
    return model_spec_from_config(config, m["name"], where or str(m.get("source", "trace")))


def packed_width(neurons: int) -> int:
    """Bytes per bit-packed mask row."""
    return (neurons + 7) // 8


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool [..., m] -> uint8 [..., ceil(m/8)], neuron i in bit i % 8 of byte i // 8."""
    packed = np.packbits(mask.numpy().astype(bool, copy=False), axis=-1, bitorder="little")
    return torch.from_numpy(np.ascontiguousarray(packed))


def unpack_mask(packed: torch.Tensor, neurons: int) -> torch.Tensor:
    """uint8 [..., ceil(m/8)] -> bool [..., m]; the inverse of `pack_mask`."""
    bits = np.unpackbits(packed.numpy(), axis=-1, count=neurons, bitorder="little")
    return torch.from_numpy(bits.astype(bool))


def policy_section(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace's `policy` section; a v1 trace (no section) reads as DART's (or dense for
    mode dense), with every head and weight kept."""
    if "policy" in trace:
        return trace["policy"]  # type: ignore[no-any-return]
    m = trace["model"]
    mode = trace.get("dart", {}).get("mode", "dart")
    return {
        "name": "dense" if mode == "dense" else "dart",
        "params": {},
        "head_masks": torch.ones(m["num_layers"], m["num_heads"], dtype=torch.bool),
        "weight_format": "dense",
        "weight_density": torch.ones(m["num_layers"], dtype=torch.float64),
    }


def new_policy_section(
    name: str,
    layers: int,
    heads: int,
    params: dict[str, Any] | None = None,
    head_masks: torch.Tensor | None = None,
    weight_format: str = "dense",
    weight_density: torch.Tensor | None = None,
) -> dict[str, Any]:
    """A v2 `policy` section; heads and weights all kept unless given."""
    return {
        "name": name,
        "params": dict(params or {}),
        "head_masks": head_masks if head_masks is not None else torch.ones(layers, heads, dtype=torch.bool),
        "weight_format": weight_format,
        "weight_density": weight_density
        if weight_density is not None
        else torch.ones(layers, dtype=torch.float64),
    }
