"""Checking a loaded trace against its schema version (v1 or v2), once, so that no later code meets a field it
did not check: types, shapes, sizes bounded by the declared model (checked before anything
is unpacked), values in range and the cross-field rules that tie steps, epochs, checks and
re-triggers together. Every error names the file and the field."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from dartsim.errors import UserError
from dartsim.names import PHASES, WEIGHT_FORMATS
from dartsim.text import brief
from dartsim.trace.schema import (
    CHECK_DTYPES,
    DART_MODES,
    EPOCH_MATRIX_DTYPES,
    EPOCH_VECTOR_DTYPES,
    FORMAT_NAME,
    MODEL_INT_FIELDS,
    READABLE_VERSIONS,
    RETRIGGER_DTYPES,
    SCHEMA_VERSION,
    STEP_DTYPES,
    model_spec_from_section,
    packed_width,
)

MAX_NESTING = 6
"""Deepest nesting of mappings and lists in a valid trace (trace -> section -> list)."""
MAX_STRING_CHARS = 1 << 22
"""Longest string field (a prompt or the generated text; 4M characters is ~1M tokens)."""
STATUSES = ("complete", "interrupted")
"""Recording outcomes besides `error: <what>` (dart/session.py)."""
DART_TYPES: dict[str, type | tuple[type, ...]] = {
    "variant": str,
    "mode": str,
    "mask_apply": str,
    "ranking": str,
    "score": str,
    "allocation": str,
    "sparsity": (int, float),
    "delta": (int, float),
    "alpha_e": (int, float),
    "alpha_l": (int, float),
    "beta_e": (int, float),
    "beta_l": (int, float),
    "p_min": (int, float),
    "p_max": (int, float),
    "tau": int,
    "reference_tokens": int,
    "c0": int,
    "masking_step": int,
    "prompt_in_reference": bool,
    "retrigger": bool,
    "reproduce_published_defects": bool,
}
"""Types of the `dart` section's fields; other keys are kept but never read."""
DART_REQUIRED = ("variant", "mode", "sparsity")
GENERATION_TYPES: dict[str, type | tuple[type, ...]] = {
    "text": str,
    "stopped_at_eos": bool,
    "max_new_tokens": int,
    "min_new_tokens": int,
    "ignore_eos": bool,
    "temperature": (int, float),
    "chat_template": bool,
}
"""Types of the optional `generation` fields (synthetic traces leave some out)."""


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

    def typed(self, section: dict[str, Any], name: str, key: str, kind: type | tuple[type, ...]) -> Any:
        value = section.get(key)
        wrong_bool = isinstance(value, bool) and kind is not bool
        if wrong_bool or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{name}.{key}" if name else key, f"must be {names}, got {brief(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{name}.{key}" if name else key, f"must be finite, got {value!r}")
        return value

    def tensor(
        self,
        section: dict[str, Any],
        name: str,
        key: str,
        dtype_name: str,
        shape: tuple[int | None, ...],
    ) -> torch.Tensor:
        field = f"{name}.{key}"
        dtype = getattr(torch, dtype_name)
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

    def vectors(self, section: dict[str, Any], name: str, dtypes: dict[str, str]) -> int:
        """Check the 1-D fields `dtypes` of `section`; they must share one length, returned."""
        length: int | None = None
        for key, dtype in dtypes.items():
            length = self.tensor(section, name, key, dtype, (length,)).shape[0]
        assert length is not None, "dtypes is never empty"
        return length

    def finite(self, value: torch.Tensor, field: str, low: float, high: float = math.inf) -> None:
        if value.numel() and not bool(((value >= low) & (value <= high)).all()):
            bounds = f"[{low}, {high}]" if math.isfinite(high) else f">= {low}"
            raise self.fail(field, f"must hold finite values {bounds} (found NaN, inf or out of range)")

    def index(self, value: torch.Tensor, field: str, low: int, count: int, what: str) -> None:
        if value.numel() and (int(value.min()) < low or int(value.max()) >= count):
            raise self.fail(field, f"must index the {count} {what} (values {low}..{count - 1})")


KEEP_RATIO_TOLERANCE = 1e-9
"""How far a stored keep ratio may sit from kept / width (float64 rounding only)."""


def check_plain_tensors(obj: Any, where: str, depth: int = 0) -> None:
    """Refuse, before any value is used, structures nested deeper than a trace's and tensors
    that claim more elements than their storage holds (stride-0 or overlapping views): a
    tiny file must not expand into a huge allocation later."""
    if depth > MAX_NESTING:
        raise UserError(f"{where}: nested deeper than a trace ({MAX_NESTING} levels)")
    if isinstance(obj, dict):
        for value in obj.values():
            check_plain_tensors(value, where, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            check_plain_tensors(value, where, depth + 1)
    elif isinstance(obj, torch.Tensor):
        needed = obj.numel() * obj.element_size()
        offset = obj.storage_offset() * obj.element_size()
        if not obj.is_contiguous() or obj.untyped_storage().nbytes() < needed + offset:
            raise UserError(
                f"{where}: a tensor of shape {tuple(obj.shape)} is a view of a smaller storage "
                "(stride 0 or overlapping): refused, a trace stores every element"
            )
    elif isinstance(obj, str) and len(obj) > MAX_STRING_CHARS:
        raise UserError(f"{where}: a string of {len(obj)} characters exceeds {MAX_STRING_CHARS}")


def _header(trace: Any, c: _Checker) -> None:
    if (
        not isinstance(trace, dict)
        or not isinstance(trace.get("format"), str)
        or trace["format"] != FORMAT_NAME
    ):
        raise UserError(f"{c.where}: not a dartsim trace (no format {FORMAT_NAME!r} field)")
    version = trace.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise UserError(
            f"{c.where}: trace schema version {brief(version)} is not supported "
            f"(this dartsim reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    complete = trace.get("complete")
    if not isinstance(complete, bool):
        raise c.fail("complete", "must be true or false")
    status = c.typed(trace, "", "status", str)
    if status not in STATUSES and not status.startswith("error: "):
        raise c.fail("status", f"must be one of {', '.join(STATUSES)} or 'error: ...', got {brief(status)}")
    if complete != (status == "complete"):
        raise c.fail("complete", f"is {complete} but status is {brief(status)}")
    c.typed(trace, "", "synthetic", bool)
    if "created_by" in trace:
        c.typed(trace, "", "created_by", str)
    if "seed" in trace:
        c.typed(trace, "", "seed", int)
    versions = trace.get("versions", {})
    if not isinstance(versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise c.fail("versions", f"must map names to version strings, got {brief(versions)}")


def _model(trace: dict[str, Any], c: _Checker) -> tuple[int, int, int, int]:
    model = c.section(trace, "model")
    for key in MODEL_INT_FIELDS:
        value = model.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise c.fail(f"model.{key}", f"must be a positive integer, got {brief(value)}")
    for key in ("name", "model_type", "source"):
        c.typed(model, "model", key, str)
    c.typed(model, "model", "random_weights", bool)
    for key in ("dtype", "device"):
        if key in model:
            c.typed(model, "model", key, str)
    spec = model_spec_from_section(model, f"{c.where} (model section)")  # bounds and cross-field rules
    return (
        spec.num_layers,
        spec.intermediate_size,
        spec.vocab_size,
        spec.max_position_embeddings,
    )


def _steps(trace: dict[str, Any], c: _Checker, max_positions: int) -> int:
    steps = c.section(trace, "steps")
    count = c.vectors(steps, "steps", STEP_DTYPES)
    if count == 0:
        raise c.fail("steps", "is empty: the trace holds no forward step")
    if int(steps["phase"].max()) >= len(PHASES):
        raise c.fail("steps.phase", f"holds a phase code outside 0..{len(PHASES) - 1}")
    if int(steps["phase"][0]) != 0 or bool((steps["phase"][1:] == 0).any()):
        raise c.fail("steps.phase", "must be one prefill step followed by decode steps")
    tokens, context = steps["tokens"], steps["context_len"]
    if int(tokens.min()) <= 0:
        raise c.fail("steps.tokens", "must be positive")
    if not torch.equal(torch.cumsum(tokens.long(), 0), context.long()):
        raise c.fail("steps.context_len", "must be the running sum of steps.tokens")
    if int(context[-1]) > max_positions:
        raise c.fail(
            "steps.context_len",
            f"reaches {int(context[-1])}, beyond the model's max_position_embeddings {max_positions}",
        )
    c.finite(steps["time_s"], "steps.time_s", 0.0)
    return count


def _epochs(trace: dict[str, Any], c: _Checker, count: int, layers: int, width: int) -> int:
    epochs = c.section(trace, "epochs")
    n_epochs = c.vectors(epochs, "epochs", EPOCH_VECTOR_DTYPES)
    if n_epochs > count:
        raise c.fail("epochs", f"holds {n_epochs} mask epochs for {count} steps")
    for key, dtype in EPOCH_MATRIX_DTYPES.items():
        c.tensor(epochs, "epochs", key, dtype, (n_epochs, layers))
    masks = c.tensor(epochs, "epochs", "masks", "uint8", (n_epochs, layers, packed_width(width)))
    c.finite(epochs["keep_ratio"], "epochs.keep_ratio", 0.0, 1.0)
    c.finite(epochs["build_time_s"], "epochs.build_time_s", 0.0)
    kept = epochs["kept"]
    if n_epochs:
        if int(kept.min()) < 0 or int(kept.max()) > width:
            raise c.fail("epochs.kept", f"must lie in [0, {width}]")
        # bit counts straight from the packed bytes: memory stays the size of the file
        popcount = np.bitwise_count(masks.numpy()).sum(axis=-1, dtype=np.int64)
        if not np.array_equal(popcount, kept.numpy()):
            raise c.fail(
                "epochs.masks", "disagree with epochs.kept (bit counts differ, or padding bits are set)"
            )
        # keep_ratio is derived (kept / width): one that disagrees would make two commands
        # report two sparsities for one trace
        derived = kept.numpy().astype(np.float64) / width
        if not np.allclose(epochs["keep_ratio"].numpy(), derived, rtol=0.0, atol=KEEP_RATIO_TOLERANCE):
            worst = float(np.abs(epochs["keep_ratio"].numpy() - derived).max())
            raise c.fail(
                "epochs.keep_ratio",
                f"disagrees with epochs.kept / {width} (by up to {worst:.3g}): it is derived from it",
            )
        first, last = epochs["first_step"], epochs["last_step"]
        if bool(((first < 0) | (last >= count) | (first > last + 1)).any()):
            raise c.fail("epochs.first_step", f"and last_step must index the {count} steps")
        c.index(epochs["trigger_step"], "epochs.trigger_step", -1, count, "steps (or -1)")
        if int(epochs["reference_tokens"].min()) < 0:
            raise c.fail("epochs.reference_tokens", "must not be negative")
    c.index(trace["steps"]["epoch"], "steps.epoch", -1, n_epochs, "epochs (or -1)")
    return n_epochs


def _checks(trace: dict[str, Any], c: _Checker, count: int, n_epochs: int, max_positions: int) -> None:
    checks = c.section(trace, "drift_checks")
    c.vectors(checks, "drift_checks", CHECK_DTYPES)
    c.index(checks["step"], "drift_checks.step", 0, count, "steps")
    if checks["counter"].numel() and int(checks["counter"].min()) < 0:
        raise c.fail("drift_checks.counter", "must not be negative")
    retriggers = c.section(trace, "retriggers")
    c.vectors(retriggers, "retriggers", RETRIGGER_DTYPES)
    c.index(retriggers["step"], "retriggers.step", 0, count, "steps")
    c.index(retriggers["epoch"], "retriggers.epoch", -1, n_epochs, "epochs (or -1)")
    figure5 = c.section(trace, "figure5")
    window = c.typed(figure5, "figure5", "window", int)
    if not 0 < window <= max_positions:
        raise c.fail("figure5.window", f"must lie in [1, {max_positions}] tokens, got {window}")
    similarity = c.tensor(figure5, "figure5", "similarity", "float64", (None,))
    if similarity.shape[0] > count:
        raise c.fail("figure5.similarity", f"holds {similarity.shape[0]} values for {count} steps")


def _generation(trace: dict[str, Any], c: _Checker, count: int, vocab: int) -> None:
    generation = c.section(trace, "generation")
    first_tokens = int(trace["steps"]["tokens"][0])
    prompt_len = c.typed(generation, "generation", "prompt_len", int)
    generated_len = c.typed(generation, "generation", "generated_len", int)
    if prompt_len != first_tokens:
        raise c.fail("generation.prompt_len", f"is {prompt_len} but the prefill step holds {first_tokens}")
    if not 0 <= generated_len <= count:
        raise c.fail(
            "generation.generated_len", f"must lie in [0, {count}] (one per step), got {generated_len}"
        )
    c.typed(generation, "generation", "prompt", str)
    for key, length in (("prompt_ids", prompt_len), ("generated_ids", generated_len)):
        ids = c.tensor(generation, "generation", key, "int64", (None,))
        if ids.numel() and ids.numel() != length:
            raise c.fail(f"generation.{key}", f"holds {ids.numel()} ids, expected {length} or none")
        c.index(ids, f"generation.{key}", 0, vocab, "vocabulary entries")
    for key, kind in GENERATION_TYPES.items():
        if key in generation:
            c.typed(generation, "generation", key, kind)


def _dart(trace: dict[str, Any], c: _Checker) -> None:
    dart = c.section(trace, "dart")
    for key in DART_REQUIRED:
        if key not in dart:
            raise c.fail(f"dart.{key}", "is missing")
    for key, kind in DART_TYPES.items():
        if key in dart:
            c.typed(dart, "dart", key, kind)
    if dart["mode"] not in DART_MODES:
        raise c.fail("dart.mode", f"must be one of {', '.join(DART_MODES)}, got {brief(dart['mode'])}")
    if not 0.0 <= dart["sparsity"] < 1.0:
        raise c.fail("dart.sparsity", f"must lie in [0, 1), got {dart['sparsity']}")
    for key in ("tau", "reference_tokens", "c0"):
        if key in dart and dart[key] <= 0:
            raise c.fail(f"dart.{key}", f"must be positive, got {dart[key]}")


POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9:_-]{0,31}")
"""What a policy name looks like. Which names exist is the policy registry's to say
(policies/registry.py; the trace layer sits below it): replay and `trace info` refuse a
name it does not hold."""


def _policy(trace: dict[str, Any], c: _Checker, layers: int, heads: int) -> str:
    if trace["schema_version"] < SCHEMA_VERSION:
        return "dense" if trace.get("dart", {}).get("mode") == "dense" else "dart"
    policy = c.section(trace, "policy")
    name = c.typed(policy, "policy", "name", str)
    if not POLICY_NAME.fullmatch(name):
        raise c.fail(
            "policy.name",
            f"must be a policy name (lower-case letters, digits, ':', '_', '-'), got {brief(name)}",
        )
    params = c.section(policy, "params") if "params" in policy else None
    if params is None:
        raise c.fail("policy.params", "is missing")
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, str, bool)):
            raise c.fail(
                f"policy.params.{brief(key)}", f"must be a number, string or bool, got {brief(value)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise c.fail(f"policy.params.{key}", f"must be finite, got {value!r}")
    head_masks = c.tensor(policy, "policy", "head_masks", "bool", (layers, heads))
    if bool((~head_masks.any(dim=-1)).any()):
        raise c.fail("policy.head_masks", "leaves a layer with no attention head")
    fmt = c.typed(policy, "policy", "weight_format", str)
    if fmt not in WEIGHT_FORMATS:
        raise c.fail("policy.weight_format", f"must be one of {', '.join(WEIGHT_FORMATS)}, got {brief(fmt)}")
    density = c.tensor(policy, "policy", "weight_density", "float64", (layers,))
    c.finite(density, "policy.weight_density", 0.0, 1.0)
    if bool((density <= 0).any()):
        raise c.fail("policy.weight_density", "must be positive (a layer keeps some weights)")
    if fmt == "dense" and bool((density != 1).any()):
        raise c.fail("policy.weight_density", "must be 1 for dense weight storage")
    return name


def validate_trace(trace: Any, where: str) -> dict[str, Any]:
    """Check a loaded trace against schema v2 (or v1); errors name the file and the field."""
    c = _Checker(where)
    _header(trace, c)
    check_plain_tensors(trace, where)
    layers, width, vocab, max_positions = _model(trace, c)
    count = _steps(trace, c, max_positions)
    n_epochs = _epochs(trace, c, count, layers, width)
    _checks(trace, c, count, n_epochs, max_positions)
    _generation(trace, c, count, vocab)
    name = _policy(trace, c, layers, int(trace["model"]["num_heads"]))
    if name == "dart" or trace["schema_version"] < SCHEMA_VERSION:
        _dart(trace, c)
    return trace
