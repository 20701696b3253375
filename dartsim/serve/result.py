"""What a serving run reports: latency percentiles per request, throughput, goodput under
SLOs, and what the batches and their masks looked like; as a dict (the JSON contract), a
table and tidy CSV rows.

Per request: TTFT is arrival to first token (queueing and the stack's request handling
included), TPOT is (finish - first token) / (output tokens - 1) over requests of at least
two output tokens (as vLLM's benchmark_serving computes it), end-to-end is arrival to last
token, queueing is arrival to first scheduled. Percentiles are numpy's linear
interpolation. `duration_s` runs from the first arrival to the last token; throughput is
output tokens over it. `mean_batch` and `mean_kept_fraction` are means over iterations (a
replica's step is one iteration), `mean_kept_fraction` being the MLP neurons a step fetches
over the model's (1.0 dense).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dartsim.errors import UserError
from dartsim.serve.sim import ServeRun

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Slo:
    """Per-request targets a request must meet (all given) to count toward goodput."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise UserError(
                    f"--slo-{name.removesuffix('_s')} must be a positive number of seconds, got {value!r}"
                )

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2e_s))

    def as_dict(self) -> dict[str, float | None]:
        return {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s}


def stats(values: np.ndarray) -> dict[str, float | None]:
    """{mean, p50, p90, p99} of `values` (None where there are none)."""
    if values.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    out: dict[str, float | None] = {"mean": float(values.mean())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(values, p))
    return out


def per_request(run: ServeRun) -> dict[str, np.ndarray]:
    """Per-request columns, in request order."""
    reqs = run.requests
    arrival = np.array([r.arrival_s for r in reqs])
    first = np.array([r.first_token_s for r in reqs])
    finish = np.array([r.finish_s for r in reqs])
    scheduled = np.array([r.first_scheduled_s for r in reqs])
    output = np.array([r.output for r in reqs], dtype=np.int64)
    tpot = np.full(len(reqs), np.nan)
    many = output > 1
    tpot[many] = (finish[many] - first[many]) / (output[many] - 1)
    return {
        "request": np.arange(len(reqs)),
        "replica": np.array([r.replica for r in reqs], dtype=np.int64),
        "arrival_s": arrival,
        "prompt_tokens": np.array([r.prompt for r in reqs], dtype=np.int64),
        "output_tokens": output,
        "trace": np.array([r.trace for r in reqs], dtype=np.int64),
        "queue_s": scheduled - arrival,
        "ttft_s": first - arrival,
        "tpot_s": tpot,
        "e2e_s": finish - arrival,
        "preemptions": np.array([r.preemptions for r in reqs], dtype=np.int64),
    }


def summary(run: ServeRun, slo: Slo) -> dict[str, Any]:
    """The run's figures (the JSON contract's shape, for the run and for its dense twin)."""
    cols = per_request(run)
    it = run.iterations
    start = float(cols["arrival_s"].min())
    end = float((cols["arrival_s"] + cols["e2e_s"]).max())
    duration = end - start
    tokens = int(cols["output_tokens"].sum())
    tpot = cols["tpot_s"][~np.isnan(cols["tpot_s"])]
    out: dict[str, Any] = {
        "requests": len(run.requests),
        "ttft_s": stats(cols["ttft_s"]),
        "tpot_s": stats(tpot),
        "e2e_s": stats(cols["e2e_s"]),
        "queue_s": stats(cols["queue_s"]),
        "throughput_tokens_per_s": tokens / duration if duration > 0 else None,
        "requests_per_s": len(run.requests) / duration if duration > 0 else None,
        "duration_s": duration,
        "output_tokens": tokens,
        "iterations": int(it["time_s"].size),
        "mean_batch": float(it["sequences"].mean()),
        "max_batch": int(it["sequences"].max()),
        "mean_kept_fraction": float(it["kept_fraction"].mean()),
        "dense_iteration_share": float(it["dense"].mean()),
        "mask_builds": int(it["mask_builds"].sum()),
        "preemptions": run.preemptions,
        "decode_steps_past_trace": run.past_trace_steps,
        "busy_s": float(it["time_s"].sum()),
        "dram_bytes": int(it["bytes"].sum()),
        "flops": int(it["flops"].sum()),
    }
    if slo.given:
        ok = np.ones(len(run.requests), dtype=bool)
        for name, target in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s), ("e2e_s", slo.e2e_s)):
            if target is not None:
                values = np.nan_to_num(cols[name], nan=0.0)  # one-token requests have no TPOT
                ok &= values <= target
        out["slo"] = slo.as_dict()
        out["slo_attainment"] = float(ok.mean())
        out["goodput_requests_per_s"] = float(ok.sum()) / duration if duration > 0 else None
    return out
