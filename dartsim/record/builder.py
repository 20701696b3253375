"""Assembling a trace while a policy runs: every step, mask epoch, drift check and
re-trigger as it happens (`TraceBuilder`), or only what the run needs (`NullTraceBuilder`,
to measure the cost of tracing itself), and the header, model and version sections."""

from __future__ import annotations

import platform
from typing import Any

import torch

from dartsim import __version__
from dartsim.names import PHASES
from dartsim.record.model import LoadedModel
from dartsim.trace.schema import (
    CHECK_DTYPES,
    FIGURE5_WINDOW,
    FORMAT_NAME,
    SCHEMA_VERSION,
    STEP_DTYPES,
    model_section,
    pack_mask,
)


class TraceBuilder:
    """Collects everything a v1 trace holds, step by step."""

    def __init__(self) -> None:
        self.steps: dict[str, list[Any]] = {
            k: [] for k in ("phase", "tokens", "context_len", "epoch", "time_s")
        }
        self.epochs: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.retriggers: list[dict[str, int]] = []
        self.figure5: list[float] = []

    def step(self, phase: str, tokens: int, context_len: int, epoch: int, seconds: float) -> None:
        self.steps["phase"].append(PHASES.index(phase))
        self.steps["tokens"].append(tokens)
        self.steps["context_len"].append(context_len)
        self.steps["epoch"].append(epoch)
        self.steps["time_s"].append(seconds)
        if epoch >= 0:
            self.epochs[epoch]["last_step"] = len(self.steps["phase"]) - 1

    def epoch(self, record: dict[str, Any]) -> None:
        record["masks"] = pack_mask(record.pop("mask_bool"))
        self.epochs.append(record)

    def check(self, step: int, result: Any) -> None:
        """A drift check's outcome (a dataclass with CHECK_DTYPES' fields but `step`)."""
        self.checks.append({"step": step, **result.__dict__})

    def retrigger(self, step: int) -> None:
        self.retriggers.append({"step": step, "epoch": -1})

    def retrigger_resolved(self, epoch: int) -> None:
        if self.retriggers and self.retriggers[-1]["epoch"] == -1:
            self.retriggers[-1]["epoch"] = epoch

    def similarity(self, value: float) -> None:
        self.figure5.append(value)

    @property
    def step_count(self) -> int:
        return len(self.steps["phase"])

    def tensors(self, layers: int, width: int) -> dict[str, Any]:
        """The steps, epochs, checks, re-triggers and Figure 5 sections as tensors."""
        from dartsim.trace.schema import packed_width

        steps = {k: torch.tensor(v, dtype=getattr(torch, STEP_DTYPES[k])) for k, v in self.steps.items()}
        e = self.epochs
        epochs = {
            "first_step": torch.tensor([r["first_step"] for r in e], dtype=torch.int32),
            "last_step": torch.tensor(
                [r.get("last_step", r["first_step"] - 1) for r in e], dtype=torch.int32
            ),
            "trigger_step": torch.tensor([r["trigger_step"] for r in e], dtype=torch.int32),
            "reference_tokens": torch.tensor([r["reference_tokens"] for r in e], dtype=torch.int32),
            "build_time_s": torch.tensor([r["build_time_s"] for r in e], dtype=torch.float64),
            "kept": torch.stack([r["kept"] for r in e]) if e else torch.zeros(0, layers, dtype=torch.int32),
            "masks": torch.stack([r["masks"] for r in e])
            if e
            else torch.zeros(0, layers, packed_width(width), dtype=torch.uint8),
        }
        for key in ("keep_ratio", "s_bar", "importance", "depth", "pruning"):
            epochs[key] = (
                torch.stack([r[key] for r in e]) if e else torch.zeros(0, layers, dtype=torch.float64)
            )
        checks = {
            k: torch.tensor([c[k] for c in self.checks], dtype=getattr(torch, t))
            for k, t in CHECK_DTYPES.items()
        }
        retriggers = {
            "step": torch.tensor([r["step"] for r in self.retriggers], dtype=torch.int32),
            "epoch": torch.tensor([r["epoch"] for r in self.retriggers], dtype=torch.int32),
        }
        figure5 = {
            "window": FIGURE5_WINDOW,
            "similarity": torch.tensor(self.figure5, dtype=torch.float64),
        }
        return {
            "steps": steps,
            "epochs": epochs,
            "drift_checks": checks,
            "retriggers": retriggers,
            "figure5": figure5,
        }


class NullTraceBuilder(TraceBuilder):
    """Keeps only what the run itself needs (the step count and epoch indices)."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._epochs = 0

    def step(self, phase: str, tokens: int, context_len: int, epoch: int, seconds: float) -> None:
        self._count += 1

    def epoch(self, record: dict[str, Any]) -> None:
        self._epochs += 1

    def check(self, step: int, result: Any) -> None:
        pass

    def retrigger(self, step: int) -> None:
        pass

    def retrigger_resolved(self, epoch: int) -> None:
        pass

    def similarity(self, value: float) -> None:
        pass

    @property
    def step_count(self) -> int:
        return self._count


def trace_header(loaded: LoadedModel, seed: int) -> dict[str, Any]:
    """The format, library-version and model sections every recorded trace starts with."""
    import transformers

    spec = loaded.spec
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "synthetic": False,
        "created_by": f"dartsim {__version__}",
        "seed": seed,
        "versions": {
            "dartsim": __version__,
            "torch": str(torch.__version__),
            "transformers": str(transformers.__version__),
            "python": platform.python_version(),
        },
        "model": model_section(
            spec,
            loaded.source,
            loaded.random_weights,
            loaded.dtype,
            str(next(loaded.model.parameters()).device.type),
        ),
    }
