"""Published GPU measurements against dartsim's predictions (`dartsim validate --published`).

The measurements ship as `published-gpu.yaml` beside this module: every row cites its
source with the exact text its number was read from, names the dartsim device and model
presets it maps to, and says whether it belongs to the calibration part or the held-out
part (the split rule is stated in the file and was fixed before any fit).

A row is predicted with the engine on its device preset, dense, at its batch, precision
and tensor-parallel degree:
- ttft: the prefill step of `input_tokens` (the whole batch in one step);
- tpot: the mean decode step over the output, taken as the mean of the first and last
  decode steps (exact while step time is affine in the context, the property the replay's
  memoisation rests on; a test checks it against a full replay);
- e2e_latency: ttft + (output_tokens - 1) x tpot;
- output_tokens_per_s: output_tokens / e2e_latency.

The fit of calibrated preset fields is in validate/published_fit.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dartsim.engine.costing import ReplayConfig, ReplayStep, StepCoster
from dartsim.errors import UserError
from dartsim.specs.dtypes import get_dtype
from dartsim.specs.hardware import HardwareSpec, hardware_preset_names, load_hardware_spec
from dartsim.specs.model import load_model_spec, preset_names
from dartsim.specs.strict_yaml import read_yaml
from dartsim.units import MS
from dartsim.workload import Precision, check_tensor_parallel

DATA_FILE = "published-gpu.yaml"
FORMAT = "dartsim-published-measurements"
METRICS = {
    "ttft": ("ms", "s"),
    "tpot": ("ms", "s"),
    "e2e_latency": ("ms", "s"),
    "output_tokens_per_s": "tokens/s",
}
SPLITS = ("calibration", "held-out")
UNIT_SCALE = {"ms": MS, "s": 1.0, "tokens/s": 1.0}
ROW_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "source": str,
    "split": str,
    "device": str,
    "device_as_stated": str,
    "model": str,
    "model_as_stated": str,
    "precision": dict,
    "precision_as_stated": str,
    "tp": int,
    "batch": int,
    "input_tokens": int,
    "output_tokens": int,
    "metric": str,
    "value": (int, float),
    "unit": str,
    "quote": str,
    "notes": str,
}


@dataclass(frozen=True)
class Row:
    """One published measurement, validated."""

    raw: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.raw[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def seconds_or_rate(self) -> float:
        """The value in SI: seconds, or tokens per second."""
        return float(self.value) * UNIT_SCALE[self.unit]

    @property
    def prec(self) -> Precision:
        p = self.precision
        return Precision(get_dtype(p["weight"]), get_dtype(p["activation"]), get_dtype(p["kv_cache"]))


@dataclass(frozen=True)
class Dataset:
    path: str
    about: str
    split: dict[str, str]
    sources: dict[str, dict[str, str]]
    rows: list[Row]


def _default_path() -> Path:
    return Path(str(resources.files("dartsim.validate").joinpath(DATA_FILE)))


def load_measurements(path: str | None = None) -> Dataset:
    """The published measurements (the shipped file, or `path`), checked row by row."""
    where = Path(path) if path else _default_path()
    raw = read_yaml(where)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{where}: not a dartsim published-measurements file (format: {FORMAT})")
    for key in ("sources", "measurements", "split", "about"):
        if key not in raw:
            raise UserError(f"{where}: missing key {key!r}")
    sources = raw["sources"]
    if not isinstance(sources, dict):
        raise UserError(f"{where}: 'sources' must be a mapping")
    devices, models = set(hardware_preset_names()), set(preset_names())
    rows, seen = [], set()
    if not isinstance(raw["measurements"], list):
        raise UserError(f"{where}: 'measurements' must be a list")
    for index, item in enumerate(raw["measurements"]):
        label = f"{where}: measurement {index}"
        if not isinstance(item, dict):
            raise UserError(f"{label} must be a mapping")
        label = f"{where}: measurement {item.get('id', index)!r}"
        for key, kind in ROW_KEYS.items():
            if key not in item:
                raise UserError(f"{label}: missing field {key!r}")
            if isinstance(item[key], bool) or not isinstance(item[key], kind):
                raise UserError(f"{label}: field {key!r} has the wrong type ({item[key]!r})")
        unknown = set(item) - set(ROW_KEYS)
        if unknown:
            raise UserError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}")
        if item["id"] in seen:
            raise UserError(f"{label}: duplicate id")
        seen.add(item["id"])
        checks = [
            (item["source"] in sources, "source", f"names no entry of 'sources' ({item['source']!r})"),
            (item["split"] in SPLITS, "split", f"must be one of {', '.join(SPLITS)}"),
            (item["device"] in devices, "device", f"is not a hardware preset ({item['device']!r})"),
            (item["model"] in models, "model", f"is not a model preset ({item['model']!r})"),
            (item["metric"] in METRICS, "metric", f"must be one of {', '.join(METRICS)}"),
            (item["value"] > 0 and math.isfinite(item["value"]), "value", "must be positive and finite"),
            (item["tp"] >= 1 and item["batch"] >= 1, "tp", "and batch must be positive"),
            (item["input_tokens"] >= 1 and item["output_tokens"] >= 1, "input_tokens", "and output >= 1"),
            (set(item["precision"]) == {"weight", "activation", "kv_cache"}, "precision", "needs weight, "
             "activation and kv_cache"),
        ]  # fmt: skip
        for ok, key, message in checks:
            if not ok:
                raise UserError(f"{label}: field {key!r} {message}")
        allowed = METRICS[item["metric"]]
        if item["unit"] not in ((allowed,) if isinstance(allowed, str) else allowed):
            raise UserError(f"{label}: unit {item['unit']!r} does not fit metric {item['metric']!r}")
        if item["metric"] == "tpot" and item["output_tokens"] < 2:
            raise UserError(f"{label}: a tpot needs at least 2 output tokens")
        row = Row(item)
        try:
            row.prec  # noqa: B018 - validates the formats
            check_tensor_parallel(load_model_spec(item["model"]), item["tp"])
        except UserError as exc:
            raise UserError(f"{label}: {exc}") from None
        rows.append(row)
    return Dataset(str(where), str(raw["about"]), dict(raw["split"]), sources, rows)


class Predictor:
    """Predictions of rows on one device, with simulated steps shared between rows."""

    def __init__(self, hw: HardwareSpec) -> None:
        self.hw = hw
        self._steps: dict[tuple[Any, ...], float] = {}

    def _step(self, row: Row, phase: str, context: int) -> float:
        key = (row.model, row.tp, row.batch, tuple(row.precision.values()), phase, context, row.input_tokens)
        if key not in self._steps:
            spec = load_model_spec(row.model)
            config = ReplayConfig(tp=row.tp, precision=row.prec)
            coster = StepCoster(spec, self.hw, config)
            dense = tuple([spec.intermediate_size] * spec.num_layers)
            tokens = row.input_tokens if phase == "prefill" else 1
            step = ReplayStep(phase, tokens, (context,) * row.batch, dense, False)
            self._steps[key] = coster.simulate(step, step.contexts)[0].time_s
        return self._steps[key]

    def times(self, row: Row) -> tuple[float, float | None]:
        """(ttft, tpot) in seconds, each only where the row's metric needs it (else 0);
        tpot None for a single output token."""
        ttft = 0.0 if row.metric == "tpot" else self._step(row, "prefill", row.input_tokens)
        if row.output_tokens < 2:
            return ttft, None
        if row.metric == "ttft":
            return ttft, 0.0
        first = row.input_tokens + 1
        last = row.input_tokens + row.output_tokens - 1
        return ttft, (self._step(row, "decode", first) + self._step(row, "decode", last)) / 2

    def predict(self, row: Row) -> float:
        """The row's metric in SI (seconds, or tokens per second)."""
        ttft, tpot = self.times(row)
        return metric_value(row, ttft, tpot)


def metric_value(row: Row, ttft: float, tpot: float | None) -> float:
    if row.metric == "ttft":
        return ttft
    assert tpot is not None or row.output_tokens == 1
    e2e = ttft + (row.output_tokens - 1) * (tpot or 0.0)
    if row.metric == "tpot":
        return tpot  # type: ignore[return-value]
    if row.metric == "e2e_latency":
        return e2e
    return row.output_tokens / e2e


def device_hardware(device: str, hw_dir: str | None) -> HardwareSpec:
    if hw_dir:
        path = Path(hw_dir) / f"{device}.yaml"
        if path.is_file():
            return load_hardware_spec(str(path))
    return load_hardware_spec(device)


def evaluate(data: Dataset, hw_dir: str | None = None) -> list[dict[str, Any]]:
    """Every row with its prediction and error ((predicted - measured) / measured)."""
    predictors: dict[str, Predictor] = {}
    out = []
    for row in data.rows:
        if row.device not in predictors:
            predictors[row.device] = Predictor(device_hardware(row.device, hw_dir))
        predicted = predictors[row.device].predict(row)
        measured = row.seconds_or_rate
        out.append(
            {
                "id": row.id,
                "source": row.source,
                "split": row.split,
                "device": row.device,
                "model": row.model,
                "tp": row.tp,
                "batch": row.batch,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "precision": row.precision["weight"],
                "metric": row.metric,
                "measured": measured,
                "predicted": predicted,
                "error": (predicted - measured) / measured,
            }
        )
    return out


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    errors = [abs(r["error"]) for r in rows]
    if not errors:
        return {"cases": 0, "median_abs_error": 0.0, "max_abs_error": 0.0}
    return {"cases": len(errors), "median_abs_error": float(np.median(errors)), "max_abs_error": max(errors)}
