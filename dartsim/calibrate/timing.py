"""Timing helpers shared by the calibration microbenchmarks and `dartsim validate`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds per call over `repeats` timed runs (after one warm-up run)."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the measurement was."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s > 0 else 0.0


def time_call(fn: Callable[[], object], repeats: int, inner: int = 1, warmup: int = 1) -> Timing:
    """Median, min and max seconds per call of `fn`, each sample averaging `inner` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)


def inner_for(fn: Callable[[], object], target_s: float = 0.02, limit: int = 10_000) -> int:
    """How many calls make one sample of about `target_s` (short calls are averaged)."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(limit, int(target_s / once)))


def measured_stack(base: str, name: str, values: dict[str, float], source: str) -> dict[str, Any]:
    """A stack document: the preset `base` with measured launch fields (YAML paths and
    units) replaced, each citing `source`, and listed as calibrated."""
    from dartsim.specs.stack import load_stack_spec, stack_spec_from_dict, stack_to_yaml_dict

    doc = stack_to_yaml_dict(load_stack_spec(base))
    doc.pop("devices", None)
    doc["name"] = name
    doc["description"] = f"{doc['description']}; launch costs measured by dartsim calibrate"
    for path, value in values.items():
        section, _, key = path.partition(".")
        doc[section][key] = value
        doc[section][f"{key}_source"] = source
    doc["calibrated"] = sorted({*doc.get("calibrated", []), *values})
    stack_spec_from_dict(doc, "calibration")  # the document must load as it stands
    return doc
