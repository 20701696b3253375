"""Trace format v1: only plain tensors, numbers, strings, booleans, lists and dicts, so a
trace loads with `torch.load(..., weights_only=True)` and never executes code.

Layout (S steps, E mask epochs, L layers, m FFN neurons, C drift checks, R re-triggers):

- `format` ("dartsim-trace"), `schema_version` (1), `complete`, `status`, `synthetic`,
  `created_by`, `seed`, `versions` {dartsim, torch, transformers, python}.
- `model`: name, model_type, num_layers, hidden_size, intermediate_size, num_heads,
  num_kv_heads, head_dim, vocab_size, max_position_embeddings, source, random_weights,
  dtype, device.
- `generation`: prompt, prompt_len, generated_len, stopped_at_eos, max_new_tokens,
  min_new_tokens, ignore_eos, temperature, chat_template, text, prompt_ids [P],
  generated_ids [G].
- `dart`: every DART parameter, plus mode (dart, static, dense) and mask_apply.
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

from dartsim.errors import UserError
from dartsim.specs.model import ModelSpec, model_spec_from_config

FORMAT_NAME = "dartsim-trace"
SCHEMA_VERSION = 1
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


def model_spec_of(trace: dict[str, Any]) -> ModelSpec:
    """The model a trace was recorded on, from the dimensions it records."""
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
    return model_spec_from_config(config, m["name"], str(m.get("source", "trace")))


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


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, message: str) -> UserError:
        return UserError(f"{self.where}: field {field!r} {message}")

    def section(self, trace: dict[str, Any], key: str) -> dict[str, Any]:
        value = trace.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        return value

    def tensor(
        self,
        section: dict[str, Any],
        name: str,
        key: str,
        dtype: torch.dtype,
        shape: tuple[int | None, ...],
    ) -> torch.Tensor:
        field = f"{name}.{key}"
        value = section.get(key)
        if not isinstance(value, torch.Tensor):
            raise self.fail(field, f"must be a tensor, got {type(value).__name__}")
        if value.dtype != dtype:
            raise self.fail(field, f"must have dtype {dtype}, got {value.dtype}")
        if value.dim() != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
        ):
            raise self.fail(field, f"has shape {tuple(value.shape)}, expected {shape}")
        return value


def validate_trace(trace: Any, where: str) -> dict[str, Any]:
    """Check a loaded trace against schema v1; errors name the file and the field."""
    if not isinstance(trace, dict) or trace.get("format") != FORMAT_NAME:
        raise UserError(f"{where}: not a dartsim trace (no format {FORMAT_NAME!r} field)")
    version = trace.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{where}: trace schema version {version!r} is not supported "
            f"(this dartsim reads version {SCHEMA_VERSION})"
        )
    c = _Checker(where)
    model = c.section(trace, "model")
    for key in _MODEL_INT_FIELDS:
        value = model.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise c.fail(f"model.{key}", f"must be a positive integer, got {value!r}")
    if not isinstance(model.get("name"), str):
        raise c.fail("model.name", "must be a string")
    layers, width = model["num_layers"], model["intermediate_size"]

    steps = c.section(trace, "steps")
    count = None
    for key, dtype in STEP_DTYPES.items():
        t = c.tensor(steps, "steps", key, dtype, (count,))
        count = t.shape[0]
    assert count is not None
    if count == 0:
        raise c.fail("steps", "is empty: the trace holds no forward step")
    if int(steps["phase"].max()) >= len(PHASES):
        raise c.fail("steps.phase", f"holds a phase code outside 0..{len(PHASES) - 1}")
    if int(steps["tokens"].min()) <= 0 or int(steps["context_len"].min()) <= 0:
        raise c.fail("steps.tokens", "and steps.context_len must be positive")
    if bool((steps["tokens"] > steps["context_len"]).any()):
        raise c.fail("steps.tokens", "exceeds steps.context_len in some step")

    epochs = c.section(trace, "epochs")
    n_epochs = None
    for key, dtype in EPOCH_VECTOR_DTYPES.items():
        n_epochs = c.tensor(epochs, "epochs", key, dtype, (n_epochs,)).shape[0]
    for key, dtype in EPOCH_MATRIX_DTYPES.items():
        c.tensor(epochs, "epochs", key, dtype, (n_epochs, layers))
    masks = c.tensor(epochs, "epochs", "masks", torch.uint8, (n_epochs, layers, packed_width(width)))
    kept = epochs["kept"]
    if n_epochs:
        if int(kept.min()) < 0 or int(kept.max()) > width:
            raise c.fail("epochs.kept", f"must lie in [0, {width}]")
        popcount = torch.stack([unpack_mask(masks[e], width).sum(dim=-1) for e in range(n_epochs)]).to(
            torch.int32
        )
        if not torch.equal(popcount, kept):
            raise c.fail("epochs.masks", "disagree with epochs.kept (bit counts differ)")
        first, last = epochs["first_step"], epochs["last_step"]
        if bool(((first < 0) | (last >= count) | (first > last + 1)).any()):
            raise c.fail("epochs.first_step", f"and last_step must index the {count} steps")
    epoch_of_step = steps["epoch"]
    if int(epoch_of_step.min()) < -1 or int(epoch_of_step.max()) >= (n_epochs or 0):
        raise c.fail("steps.epoch", f"must be -1 or an epoch index below {n_epochs}")

    checks = c.section(trace, "drift_checks")
    n_checks = None
    for key, dtype in CHECK_DTYPES.items():
        n_checks = c.tensor(checks, "drift_checks", key, dtype, (n_checks,)).shape[0]
    retriggers = c.section(trace, "retriggers")
    n_re = None
    for key, dtype in RETRIGGER_DTYPES.items():
        n_re = c.tensor(retriggers, "retriggers", key, dtype, (n_re,)).shape[0]
    if n_re and (int(retriggers["step"].min()) < 0 or int(retriggers["step"].max()) >= count):
        raise c.fail("retriggers.step", f"must index the {count} steps")

    generation = c.section(trace, "generation")
    for key in ("prompt_len", "generated_len"):
        value = generation.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise c.fail(f"generation.{key}", f"must be a non-negative integer, got {value!r}")
    c.section(trace, "dart")
    if not isinstance(trace.get("complete"), bool):
        raise c.fail("complete", "must be true or false")
    return trace
