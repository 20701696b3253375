"""Predicted against measured: replay traces recorded on this host with a hardware preset
calibrated on it (dartsim calibrate --device cpu), and compare step times.

Traces recorded with `--mask-apply zero` did the full dense FFN arithmetic (masking only
zeroes u), so they are replayed dense; `compact` traces are replayed with their masks.
Everything is fp32, as the recording ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dartsim.engine.replay_config import ReplayConfig
from dartsim.replay.run import densified, run_steps
from dartsim.replay.steps import build_steps
from dartsim.specs.dtypes import FP32
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.trace.types import Trace
from dartsim.units import MS_PER_S
from dartsim.workload import Precision

RECORDED_PRECISION = Precision(weight=FP32, activation=FP32, kv_cache=FP32)
NOISY_SPREAD = 0.5
"""Decode-step spread ((p90 - p10) / median of the measured steps) above which a trace's
timings are flagged as noisy: on an idle host the steps of one run differ by a few tens of
percent at most (context growth and re-trigger epochs), so more means other load."""
NOISY_RATIO = (0.5, 2.0)
"""Measured / predicted outside this range is flagged as well."""


def compare(path: Path, trace: Trace, spec: ModelSpec, hw: HardwareSpec, prefetch: bool) -> dict[str, Any]:
    """Measured and predicted prefill and mean decode step of one recorded trace (ms)."""
    mode = (trace.dart or {}).get("mask_apply", "zero")  # policy runs mask by zeroing
    steps = build_steps([trace], spec, False)
    if mode == "zero":
        steps = densified(steps, spec.intermediate_size)
    config = ReplayConfig(prefetch=prefetch, mask_apply="compact", precision=RECORDED_PRECISION)
    predicted = run_steps(steps, spec, hw, config).step_times_s
    measured = trace.steps.time_s
    decode = trace.steps.decode
    m_dec, p_dec = float(np.mean(measured[decode])), float(np.mean(predicted[decode]))
    p10, p50, p90 = (float(v) for v in np.percentile(measured[decode], [10, 50, 90]))
    return {
        "trace": path.name,
        "mask_apply": mode,
        "measured_prefill_ms": float(measured[0]) * MS_PER_S,
        "predicted_prefill_ms": float(predicted[0]) * MS_PER_S,
        "measured_decode_ms": m_dec * MS_PER_S,
        "predicted_decode_ms": p_dec * MS_PER_S,
        "decode_ratio": m_dec / p_dec,
        "decode_spread": (p90 - p10) / p50,
    }
