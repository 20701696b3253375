"""What a replay gives back: typed, with the JSON contract of `dartsim replay` derived from
it in one place (`ReplayResult.contract`).

A `RunResult` is one run of the workload (as recorded, or its dense twin): totals, the
attention / MLP / other split, every layer's parts, TTFT and TPOT, and each mask build.
A `ReplayResult` pairs the run with its dense twin (when asked for) and says what ran
where (model, hardware, tensor-parallel degree, the run's resolved device choices).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dartsim.engine.energy import Energy

COMPONENTS = ("attention", "mlp", "other")
"""How a run's totals split: the layers' attention and MLP blocks, and everything else."""
PARTS = COMPONENTS[:2]
"""The per-layer split; norms and residual adds count towards `other`."""


def energy_fields(e: Energy | None) -> Mapping[str, float | None]:
    """`energy_j`, `energy_j_low`, `energy_j_high` (None without an energy model)."""
    if e is None:
        return {"energy_j": None, "energy_j_low": None, "energy_j_high": None}
    return dict(e.fields())


@dataclass(frozen=True)
class Totals:
    bytes: int
    """DRAM/HBM traffic per device."""
    flops: int
    time_s: float
    link_bytes: int
    """Bytes each device sent over the chip-to-chip link."""
    energy: Energy | None = None
    """One device's joules (None: the hardware file has no energy section)."""


@dataclass(frozen=True)
class Component:
    """One of attention, MLP, other: its cost and its shares of the run's bytes and time."""

    bytes: int
    flops: int
    time_s: float
    share_bytes: float | None
    share_time: float | None
    mask_builds_bytes: int | None = None
    """`other` only: what the mask builds in it cost (also listed one by one)."""
    mask_builds_time_s: float | None = None
    energy: Energy | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bytes": self.bytes,
            "flops": self.flops,
            "time_s": self.time_s,
            **energy_fields(self.energy),
            "share_bytes": self.share_bytes,
            "share_time": self.share_time,
        }
        if self.mask_builds_bytes is not None:
            out["mask_builds_bytes"] = self.mask_builds_bytes
            out["mask_builds_time_s"] = self.mask_builds_time_s
        return out


@dataclass(frozen=True)
class LayerPart:
    bytes: int
    flops: int
    time_s: float
    bound: str | None
    """The resource with the largest demand in the run's middle decode step."""
    energy: Energy | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "flops": self.flops,
            "time_s": self.time_s,
            **energy_fields(self.energy),
            "bound": self.bound,
        }


@dataclass(frozen=True)
class Layer:
    layer: int
    attention: LayerPart
    mlp: LayerPart

    def part(self, name: str) -> LayerPart:
        return self.attention if name == "attention" else self.mlp


@dataclass(frozen=True)
class MaskBuild:
    """One mask build (the first mask or a re-trigger) and what it cost."""

    step: int
    time_s: float
    bytes: int
    host_bytes: int
    flops: int
    """Top-k and classifier work (counted in the run's totals, in `other`)."""


@dataclass(frozen=True)
class RunResult:
    """One run of the workload on the device model."""

    tokens: int
    """Generated tokens (one per sequence's prefill, one per sequence per decode step)."""
    totals: Totals
    components: Mapping[str, Component]
    ttft_s: float
    """Until the last sequence's first token: every prefill step (and the requests'
    handling), as the sequences prefill before the batch decodes."""
    ttft_mean_s: float | None
    """Per sequence, the time to its first token: mean and 99th percentile (a batched
    prefill gives every sequence the same; chunks and one-by-one prefills do not)."""
    ttft_p99_s: float | None
    tpot_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    tokens_per_s: float | None
    layers: tuple[Layer, ...]
    mask_builds: tuple[MaskBuild, ...]
    simulated_steps: int
    step_times_s: np.ndarray = field(repr=False)
    """Every step's time, in order (prefills first)."""
    power: Mapping[str, Any] = field(default_factory=dict)
    """The top-level energy fields (replay/energy.py energy_summary)."""

    @property
    def mask_build_time_s(self) -> float:
        return sum(b.time_s for b in self.mask_builds)

    def body(self) -> dict[str, Any]:
        """The run's part of the JSON contract."""
        return {
            "tokens": self.tokens,
            "components": {name: c.as_dict() for name, c in self.components.items()},
            "totals": {
                "bytes": self.totals.bytes,
                "flops": self.totals.flops,
                "time_s": self.totals.time_s,
                "link_bytes": self.totals.link_bytes,
                **energy_fields(self.totals.energy),
            },
            **self.power,
            "ttft_s": self.ttft_s,
            "ttft_mean_s": self.ttft_mean_s,
            "ttft_p99_s": self.ttft_p99_s,
            "tpot_s": self.tpot_s,
            "tpot_p50_s": self.tpot_p50_s,
            "tpot_p99_s": self.tpot_p99_s,
            "tokens_per_s": self.tokens_per_s,
            "layers": [
                {"layer": row.layer, "attention": row.attention.as_dict(), "mlp": row.mlp.as_dict()}
                for row in self.layers
            ],
            "retriggers": [
                {
                    "step": b.step,
                    "time_s": b.time_s,
                    "bytes": b.bytes,
                    "host_bytes": b.host_bytes,
                    "flops": b.flops,
                }
                for b in self.mask_builds
            ],
            "simulated_steps": self.simulated_steps,
        }


@dataclass(frozen=True)
class Setup:
    """What ran where: the identity fields of every output."""

    model: str
    hw: str
    tp: int
    batch: int
    mask_apply: str
    prefetch: bool
    launch: str
    stack: str
    """The software stack (and the device whose fitted values it carries)."""
    allreduce: str | None
    """The algorithm used (None without tensor parallelism)."""
    memoized: bool
    precision: Mapping[str, str]
    retargeted_from: str | None
    """The traces' own model when they were replayed as another."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "hw": self.hw,
            "tp": self.tp,
            "batch": self.batch,
            "mask_apply": self.mask_apply,
            "prefetch": self.prefetch,
            "launch": self.launch,
            "stack": self.stack,
            "allreduce": self.allreduce,
            "memoized": self.memoized,
            "precision": dict(self.precision),
        }


@dataclass(frozen=True)
class ReplayResult:
    """A replay job's outcome: the run as recorded and, when asked for, its dense twin."""

    setup: Setup
    run: RunResult
    dense: RunResult | None = None

    @property
    def speedup(self) -> float | None:
        """Dense time over the run's time (None without the dense twin)."""
        if self.dense is None:
            return None
        return self.dense.totals.time_s / self.run.totals.time_s

    def contract(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The stable JSON object of `dartsim replay` / `dartsim simulate`: identity fields,
        the run, `extra` (what the command knows of the workload), and with the dense
        twin a `dense` object of the same shape and the `speedup`."""
        about = dict(extra or {})
        if self.setup.retargeted_from is not None:
            about["retargeted_from"] = self.setup.retargeted_from
        data = {**self.setup.as_dict(), **self.run.body(), **about}
        if self.dense is not None:
            data["dense"] = {**self.setup.as_dict(), **self.dense.body()}
            data["speedup"] = self.speedup
        return data
