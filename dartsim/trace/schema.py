"""Trace format v2: only plain tensors, numbers, strings, booleans, lists and dicts, so a
trace loads with `torch.load(..., weights_only=True)` and never executes code. Readers
get it as a typed `Trace` (trace/types.py); this module is the file layout.

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
  decoder weights kept). A v1 trace reads as policy `dart` (or `dense` for mode dense):
  trace/upgrade.py turns it into a v2 mapping once, at load.
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

from dartsim.names import PHASES
from dartsim.specs.model import ModelSpec, model_spec_from_config

FORMAT_NAME = "dartsim-trace"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
PHASE_PREFILL = PHASES.index("prefill")
PHASE_DECODE = PHASES.index("decode")
FIGURE5_WINDOW = 10
"""Tokens in the sliding window of the `figure5` similarity curve (the DART paper's Figure 5)."""
DART_MODES = ("dart", "static", "dense")
"""How DART ran: with its masks and re-triggers, keeping its first mask (static), or
without masks (dense, for Figure 5)."""

MODEL_INT_FIELDS = (
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
# Element types of every tensor field, by name (torch and numpy share these names).
STEP_DTYPES = {
    "phase": "uint8",
    "tokens": "int32",
    "context_len": "int32",
    "epoch": "int32",
    "time_s": "float64",
}
EPOCH_VECTOR_DTYPES = {
    "first_step": "int32",
    "last_step": "int32",
    "trigger_step": "int32",
    "reference_tokens": "int32",
    "build_time_s": "float64",
}
EPOCH_MATRIX_DTYPES = {
    "kept": "int32",
    "keep_ratio": "float64",
    "s_bar": "float64",
    "importance": "float64",
    "depth": "float64",
    "pruning": "float64",
}
CHECK_DTYPES = {
    "step": "int32",
    "similarity": "float64",
    "mu": "float64",
    "sigma": "float64",
    "threshold": "float64",
    "counter": "int32",
    "detected": "bool",
    "fired": "bool",
}
RETRIGGER_DTYPES = {"step": "int32", "epoch": "int32"}


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


def model_spec_from_section(m: dict[str, Any], where: str | None = None) -> ModelSpec:
    """The model a trace was recorded on, from the dimensions its `model` section records;
    errors name `where` (the trace file) when given."""
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


def pack_mask_array(mask: Any) -> np.ndarray:
    """Bool [..., m] -> uint8 [..., ceil(m/8)], neuron i in bit i % 8 of byte i // 8."""
    packed = np.packbits(np.asarray(mask).astype(bool, copy=False), axis=-1, bitorder="little")
    return np.ascontiguousarray(packed)


def unpack_mask_array(packed: Any, neurons: int) -> np.ndarray:
    """uint8 [..., ceil(m/8)] -> bool [..., m]; the inverse of `pack_mask_array`."""
    bits = np.unpackbits(np.asarray(packed), axis=-1, count=neurons, bitorder="little")
    return bits.astype(bool)


def pack_mask(mask: Any) -> Any:
    """`pack_mask_array` for the recording side: a bool tensor in, a uint8 tensor out."""
    import torch

    return torch.from_numpy(pack_mask_array(mask.numpy() if hasattr(mask, "numpy") else mask))


def unpack_mask(packed: Any, neurons: int) -> Any:
    """`unpack_mask_array` for the recording side: a uint8 tensor in, a bool tensor out."""
    import torch

    raw = packed.numpy() if hasattr(packed, "numpy") else packed
    return torch.from_numpy(unpack_mask_array(raw, neurons))


def new_policy_section(
    name: str,
    layers: int,
    heads: int,
    params: dict[str, Any] | None = None,
    head_masks: Any = None,
    weight_format: str = "dense",
    weight_density: Any = None,
) -> dict[str, Any]:
    """A v2 `policy` section (torch tensors, as the file holds); heads and weights all
    kept unless given."""
    import torch

    return {
        "name": name,
        "params": dict(params or {}),
        "head_masks": head_masks if head_masks is not None else torch.ones(layers, heads, dtype=torch.bool),
        "weight_format": weight_format,
        "weight_density": weight_density
        if weight_density is not None
        else torch.ones(layers, dtype=torch.float64),
    }
