"""The typed trace every reader works with: sections as frozen dataclasses, arrays as
read-only numpy arrays, one schema version (the current one).

`load_trace` validates the file's raw mapping (trace/validate.py), upgrades an older
version once (trace/upgrade.py) and builds a `Trace`; nothing downstream branches on a
version or indexes a section by string. `Trace.to_dict` gives back the plain mapping of
torch tensors that `save_trace` writes (the file format: trace/schema.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import PHASE_DECODE, PHASE_PREFILL, model_spec_from_section, unpack_mask_array


def _array(value: Any) -> np.ndarray:
    """A read-only numpy view of a tensor or array (no copy for CPU tensors)."""
    arr = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
    arr = np.asarray(arr)
    view = arr.view()
    view.setflags(write=False)
    return view


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


class _Arrays:
    """Build a section of arrays from a mapping, and back."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Any:
        return cls(**{f.name: _array(raw[f.name]) for f in fields(cls)})  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, Any]:
        import torch

        return {f.name: torch.from_numpy(np.array(getattr(self, f.name))) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelInfo:
    """The `model` section: the dimensions of the model the trace was recorded on."""

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    source: str
    random_weights: bool
    dtype: str = ""
    """The recording's weight dtype (empty when the file does not say)."""
    device: str = ""

    def spec(self, where: str | None = None) -> ModelSpec:
        """The recorded model as a ModelSpec (errors name `where`)."""
        return model_spec_from_section(self.as_dict(), where)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Steps(_Arrays):
    """One entry per forward step: phase code, tokens, context after the step, the mask
    epoch in force (-1: FFN dense) and the measured seconds."""

    phase: np.ndarray
    tokens: np.ndarray
    context_len: np.ndarray
    epoch: np.ndarray
    time_s: np.ndarray

    @property
    def count(self) -> int:
        return int(self.phase.shape[0])

    @property
    def decode(self) -> np.ndarray:
        """Bool [S]: the decode steps."""
        return self.phase == PHASE_DECODE

    @property
    def prefill(self) -> np.ndarray:
        return self.phase == PHASE_PREFILL


@dataclass(frozen=True)
class Epochs(_Arrays):
    """One entry per mask epoch (a mask in force over a run of steps)."""

    first_step: np.ndarray
    last_step: np.ndarray
    trigger_step: np.ndarray
    reference_tokens: np.ndarray
    build_time_s: np.ndarray
    kept: np.ndarray
    """[E, L] kept neurons per layer."""
    keep_ratio: np.ndarray
    s_bar: np.ndarray
    importance: np.ndarray
    depth: np.ndarray
    pruning: np.ndarray
    masks: np.ndarray
    """[E, L, ceil(m/8)] bit-packed kept sets (trace/schema.py pack_mask)."""

    @property
    def count(self) -> int:
        return int(self.kept.shape[0])

    def mask(self, epoch: int, width: int) -> np.ndarray:
        """Bool [L, m] kept set of one epoch (a fresh, writable array)."""
        return unpack_mask_array(self.masks[epoch], width)


@dataclass(frozen=True)
class DriftChecks(_Arrays):
    step: np.ndarray
    similarity: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    threshold: np.ndarray
    counter: np.ndarray
    detected: np.ndarray
    fired: np.ndarray

    @property
    def count(self) -> int:
        return int(self.step.shape[0])


@dataclass(frozen=True)
class Retriggers(_Arrays):
    step: np.ndarray
    """The step whose drift check fired."""
    epoch: np.ndarray
    """The epoch it led to (-1 if the run ended first)."""

    @property
    def count(self) -> int:
        return int(self.step.shape[0])


@dataclass(frozen=True)
class Figure5:
    window: int
    similarity: np.ndarray


@dataclass(frozen=True)
class PolicySection:
    """Which sparsity policy the trace was recorded under and what it kept besides FFN
    neurons: attention heads per layer and the stored density of pruned weights."""

    name: str
    params: Mapping[str, Any]
    head_masks: np.ndarray
    """Bool [L, H]: the heads in force while a mask epoch is."""
    weight_format: str
    weight_density: np.ndarray
    """[L] fraction of each layer's decoder weights kept."""


@dataclass(frozen=True)
class Generation:
    """The prompt and what was generated, with the settings that decided it."""

    prompt: str
    prompt_len: int
    generated_len: int
    prompt_ids: np.ndarray
    generated_ids: np.ndarray
    settings: Mapping[str, Any]
    """The optional fields (text, stopped_at_eos, max_new_tokens, temperature, ...)."""

    @property
    def stopped_at_eos(self) -> bool | None:
        value = self.settings.get("stopped_at_eos")
        return None if value is None else bool(value)


_GENERATION_CORE = ("prompt", "prompt_len", "generated_len", "prompt_ids", "generated_ids")


@dataclass(frozen=True)
class Trace:
    """A validated trace of the current schema version."""

    complete: bool
    status: str
    synthetic: bool
    created_by: str
    seed: int
    versions: Mapping[str, Any]
    model: ModelInfo
    generation: Generation
    policy: PolicySection
    dart: Mapping[str, Any] | None
    """DART's settings (variant, mode, sparsity, ...); only in traces DART recorded."""
    steps: Steps
    epochs: Epochs
    drift_checks: DriftChecks
    retriggers: Retriggers
    figure5: Figure5

    # -- what readers ask -----------------------------------------------------------------

    @property
    def width(self) -> int:
        """FFN neurons per layer of the recorded model."""
        return self.model.intermediate_size

    @property
    def dart_mode(self) -> str | None:
        """DART's mode (dart, static or dense), None for other policies."""
        return None if self.dart is None else str(self.dart.get("mode", "dart"))

    @property
    def prompt_in_reference(self) -> bool:
        return bool(self.dart is not None and self.dart.get("prompt_in_reference", False))

    @property
    def sparsity(self) -> Any:
        """The target sparsity the trace was recorded at (DART's, or the policy's)."""
        if self.dart is not None and "sparsity" in self.dart:
            return self.dart["sparsity"]
        return self.policy.params.get("sparsity")

    @property
    def longest_context(self) -> int:
        return int(self.steps.context_len.max())

    def mask(self, epoch: int) -> np.ndarray:
        """Bool [L, m] kept set of mask epoch `epoch`."""
        return self.epochs.mask(epoch, self.width)

    # -- conversion ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Trace:
        """A Trace from a validated mapping of the current version (trace/upgrade.py)."""
        gen = raw["generation"]
        policy = raw["policy"]
        return cls(
            complete=bool(raw["complete"]),
            status=str(raw["status"]),
            synthetic=bool(raw["synthetic"]),
            created_by=str(raw.get("created_by", "")),
            seed=int(raw.get("seed", 0)),
            versions=_frozen(raw.get("versions", {})),
            model=ModelInfo(
                **{f.name: raw["model"][f.name] for f in fields(ModelInfo) if f.name in raw["model"]}
            ),
            generation=Generation(
                prompt=gen["prompt"],
                prompt_len=int(gen["prompt_len"]),
                generated_len=int(gen["generated_len"]),
                prompt_ids=_array(gen["prompt_ids"]),
                generated_ids=_array(gen["generated_ids"]),
                settings=_frozen({k: v for k, v in gen.items() if k not in _GENERATION_CORE}),
            ),
            policy=PolicySection(
                name=policy["name"],
                params=_frozen(policy["params"]),
                head_masks=_array(policy["head_masks"]),
                weight_format=policy["weight_format"],
                weight_density=_array(policy["weight_density"]),
            ),
            dart=_frozen(raw["dart"]) if "dart" in raw else None,
            steps=Steps.from_mapping(raw["steps"]),
            epochs=Epochs.from_mapping(raw["epochs"]),
            drift_checks=DriftChecks.from_mapping(raw["drift_checks"]),
            retriggers=Retriggers.from_mapping(raw["retriggers"]),
            figure5=Figure5(int(raw["figure5"]["window"]), _array(raw["figure5"]["similarity"])),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping of torch tensors the trace file holds (trace/schema.py)."""
        import torch

        from dartsim.trace.schema import FORMAT_NAME, SCHEMA_VERSION

        def tensor(arr: np.ndarray) -> Any:
            return torch.from_numpy(np.array(arr))

        g = self.generation
        p = self.policy
        out: dict[str, Any] = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "complete": self.complete,
            "status": self.status,
            "synthetic": self.synthetic,
            "created_by": self.created_by,
            "seed": self.seed,
            "versions": dict(self.versions),
            "model": self.model.as_dict(),
            "generation": {
                "prompt": g.prompt,
                "prompt_len": g.prompt_len,
                "generated_len": g.generated_len,
                **dict(g.settings),
                "prompt_ids": tensor(g.prompt_ids),
                "generated_ids": tensor(g.generated_ids),
            },
            "policy": {
                "name": p.name,
                "params": dict(p.params),
                "head_masks": tensor(p.head_masks),
                "weight_format": p.weight_format,
                "weight_density": tensor(p.weight_density),
            },
        }
        if self.dart is not None:
            out["dart"] = dict(self.dart)
        out.update(
            steps=self.steps.to_mapping(),
            epochs=self.epochs.to_mapping(),
            drift_checks=self.drift_checks.to_mapping(),
            retriggers=self.retriggers.to_mapping(),
            figure5={"window": self.figure5.window, "similarity": tensor(self.figure5.similarity)},
        )
        return out
