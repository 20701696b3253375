"""Published GPU measurements against dartsim's predictions (`dartsim validate --published`).

The measurements ship as `published-gpu.yaml` beside this module, plus the TensorRT-LLM
0.9.0 datasheet's own lines (`dli-trt090.csv`, read by validate/dli.py): every row cites
its source with the exact text its number was read from, names the dartsim device, model
and software-stack presets it maps to, and says whether it belongs to the calibration or
the held-out part (the split rule is stated in the file and was fixed before any fit).

A row is predicted with the engine on its device preset under its stack (with the values
fitted on that device), dense, at its batch, precision and tensor-parallel degree:
- ttft: the prefill of `batch` prompts of `input_tokens` as the stack schedules it (a
  static batch: one batched step, or its chunks), plus the stack's per-request overhead;
- tpot: the mean decode step over the output, taken as the mean of the first and last
  decode steps (exact while step time is affine in the context, the property the replay's
  memoisation rests on; a test checks it against a full replay);
- e2e_latency: ttft + (output_tokens - 1) x tpot;
- output_tokens_per_s: the batch's rate, batch x output_tokens / e2e_latency.

The fit of calibrated hardware and stack fields is in validate/published_fit.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dartsim.engine.costing import StepCoster
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.errors import UserError
from dartsim.replay.steps import prefill_pieces
from dartsim.specs.dtypes import get_dtype
from dartsim.specs.hardware import HardwareSpec, hardware_preset_names, load_hardware_spec
from dartsim.specs.model import load_model_spec, preset_names
from dartsim.specs.stack import StackSpec, load_stack_spec, stack_for, stack_preset_names
from dartsim.specs.strict_yaml import read_yaml
from dartsim.units import MS
from dartsim.validate.dli import dli_rows
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
    "stack": str,
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
    split: dict[str, Any]
    sources: dict[str, dict[str, str]]
    rows: list[Row]

    @property
    def never_fitted(self) -> set[str]:
        return set(self.split.get("never_fitted", ()))


HELD_OUT_DIGITS = "01234"
"""A row whose id's sha256 starts with one of these hex digits is held out (5 in 16)."""


def split_rule(
    never_fitted: Sequence[str], flagged: Sequence[tuple[str, str]]
) -> Callable[[str, str, str], str]:
    """The file's stated split: held out by the hash of the id, and whole sources (or
    (source, device) pairs) held out whatever their hash."""
    never, marked = set(never_fitted), set(flagged)

    def split_of(row_id: str, source: str, device: str) -> str:
        if source in never or (source, device) in marked:
            return "held-out"
        return (
            "held-out" if hashlib.sha256(row_id.encode()).hexdigest()[0] in HELD_OUT_DIGITS else "calibration"
        )

    return split_of


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
    devices, models, stacks = set(hardware_preset_names()), set(preset_names()), set(stack_preset_names())
    rows, seen = [], set()
    if not isinstance(raw["measurements"], list):
        raise UserError(f"{where}: 'measurements' must be a list")
    split = raw["split"]
    if not isinstance(split, dict) or not isinstance(split.get("rule"), str):
        raise UserError(f"{where}: 'split' must be a mapping with the stated 'rule'")
    flagged = [(f["source"], f["device"]) for f in split.get("flagged", [])]
    split_of = split_rule(split.get("never_fitted", []), flagged)
    items = list(raw["measurements"])
    if raw.get("datasheet_rows", False) is True:  # the TensorRT-LLM 0.9.0 lines (validate/dli.py)
        items += dli_rows(split_of)
    for index, item in enumerate(items):
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
            (item["stack"] in stacks, "stack", f"is not a software-stack preset ({item['stack']!r})"),
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
    return Dataset(str(where), str(raw["about"]), dict(split), sources, rows)


StackSource = Callable[[str, HardwareSpec], StackSpec]
"""The stack a row's `stack` name means on a device (presets with their fitted values, or
the files of a fit)."""


def preset_stack(name: str, hw: HardwareSpec) -> StackSpec:
    return stack_for(name, hw)


class Predictor:
    """Predictions of rows on one device, with costed steps shared between rows."""

    def __init__(self, hw: HardwareSpec, stacks: StackSource = preset_stack) -> None:
        self.hw = hw
        self.stacks = stacks
        self._costers: dict[tuple[Any, ...], StepCoster] = {}

    def coster(self, row: Row) -> StepCoster:
        key = (row.stack, row.model, row.tp, tuple(row.precision.values()))
        if key not in self._costers:
            config = ReplayConfig(tp=row.tp, precision=row.prec, stack=self.stacks(row.stack, self.hw))
            self._costers[key] = StepCoster(load_model_spec(row.model), self.hw, config)
        return self._costers[key]

    def steps(self, row: Row) -> tuple[list[ReplayStep], list[ReplayStep]]:
        """The row's prefill steps (as its stack schedules a static batch) and its first and
        last decode steps (none without a second output token)."""
        coster = self.coster(row)
        spec = coster.spec
        dense = tuple([spec.intermediate_size] * spec.num_layers)
        pre = coster.device.stack.prefill
        prefill = []
        for pieces in prefill_pieces([row.input_tokens] * row.batch, pre.scheduling, pre.chunk_tokens):
            news = tuple(n for _, n, _ in pieces)
            contexts = tuple(c for _, _, c in pieces)
            prefill.append(ReplayStep("prefill", max(news), contexts, dense, False,
                                      news=news if len(set(news)) > 1 else None))  # fmt: skip
        decode = []
        if row.output_tokens >= 2:
            for context in (row.input_tokens + 1, row.input_tokens + row.output_tokens - 1):
                decode.append(ReplayStep("decode", 1, (context,) * row.batch, dense, False))
        return prefill, decode

    def times(self, row: Row) -> tuple[float, float | None]:
        """(ttft, tpot) in seconds, each only where the row's metric needs it (else 0);
        tpot None for a single output token."""
        coster = self.coster(row)
        prefill, decode = self.steps(row)
        ttft = 0.0
        if row.metric != "tpot":
            ttft = coster.device.stack.prefill.request_overhead_s
            ttft += sum(coster.exact(step).time_s for step in prefill)
        if not decode:
            return ttft, None
        if row.metric == "ttft":
            return ttft, 0.0
        return ttft, sum(coster.exact(step).time_s for step in decode) / len(decode)

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
    return row.batch * row.output_tokens / e2e


def device_hardware(device: str, hw_dir: str | None) -> HardwareSpec:
    if hw_dir:
        path = Path(hw_dir) / f"{device}.yaml"
        if path.is_file():
            return load_hardware_spec(str(path))
    return load_hardware_spec(device)


def folder_stacks(stack_dir: str | None) -> StackSource:
    """Stacks from the files of `stack_dir` where it has one (a fit's output), else the
    presets; the values fitted on the device applied either way."""
    if not stack_dir:
        return preset_stack
    cache: dict[str, StackSpec] = {}

    def get(name: str, hw: HardwareSpec) -> StackSpec:
        path = Path(stack_dir) / f"{name}.yaml"
        if not path.is_file():
            return stack_for(name, hw)
        if name not in cache:
            cache[name] = load_stack_spec(str(path))
        return cache[name].for_device(hw.name)

    return get


def evaluate(data: Dataset, hw_dir: str | None = None, stack_dir: str | None = None) -> list[dict[str, Any]]:
    """Every row with its prediction and error ((predicted - measured) / measured)."""
    predictors: dict[str, Predictor] = {}
    stacks = folder_stacks(stack_dir)
    out = []
    for row in data.rows:
        if row.device not in predictors:
            predictors[row.device] = Predictor(device_hardware(row.device, hw_dir), stacks)
        predicted = predictors[row.device].predict(row)
        measured = row.seconds_or_rate
        out.append(
            {
                "id": row.id,
                "group": row_group(row, data),
                "source": row.source,
                "stack": row.stack,
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


def row_group(row: Row, data: Dataset) -> str:
    """calibration; held-out (a held-out row of a fitted source); never-fitted (a source
    no fit used); flagged (held out for a stated reason)."""
    flagged = {(f["source"], f["device"]) for f in data.split.get("flagged", [])}
    if (row.source, row.device) in flagged:
        return "flagged"
    if row.source in data.never_fitted:
        return "never-fitted"
    return row.split


BATCH_BUCKETS = ((1, 1, "1"), (2, 8, "2-8"), (9, 64, "9-64"), (65, 1 << 30, "65+"))


def batch_bucket(batch: int) -> str:
    return next(label for lo, hi, label in BATCH_BUCKETS if lo <= batch <= hi)


def precision_pairs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows measured at FP16 and at FP8 that are otherwise the same case (source, device,
    model, TP, batch, lengths, metric): the measured and predicted FP16 / FP8 ratios."""
    key = ("source", "device", "model", "tp", "batch", "input_tokens", "output_tokens", "metric")
    by: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["metric"] in ("ttft", "tpot", "e2e_latency"):
            by.setdefault(tuple(r[k] for k in key), {})[r["precision"]] = r
    out = []
    for k, pair in sorted(by.items()):
        if "fp16" in pair and "fp8" in pair:
            a, b = pair["fp16"], pair["fp8"]
            measured, predicted = a["measured"] / b["measured"], a["predicted"] / b["predicted"]
            out.append({**dict(zip(key, k, strict=True)), "split": b["split"], "measured_ratio": measured,
                        "predicted_ratio": predicted, "error": predicted / measured - 1})  # fmt: skip
    return out
