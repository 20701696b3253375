"""Serving studies: a study whose workload is a stream of requests (`workload: serving`),
whose `masks` axis names the mask pools requests draw from and whose `load` axis is a
request rate or `capacity` (the highest Poisson rate meeting the study's p99 targets). Each
point serves the same seeded requests with the pool's masks and dense, and becomes one row.

    workload:
      serving:
        requests: 200                 # per run (default 300)
        lengths: azure-conv-2023      # a shipped request trace's lengths, or {prompt_len, gen_len}
        seed: 1                       # arrivals, lengths and mask draws (default 0)
        slo: {ttft_s: 2.0, tpot_s: 0.1}   # p99 targets; needed by load: capacity
    masks:
      - {label: dart-real, traces: [../traces/two-topic-70.pt]}    # recorded pool
      - {label: dart-independent, synthetic: 0.7, pool: 16}        # independent synthetic DART
    load: [capacity, 2, 4]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dartsim.errors import UserError

SERVING_KEYS = {"requests": 300, "lengths": "azure-conv-2023", "seed": 0, "slo": {}}
SLO_KEYS = ("ttft_s", "tpot_s", "e2e_s")
MASK_KEYS = {"label", "traces", "synthetic", "pool"}
CAPACITY = "capacity"
"""A `load` value meaning: search the highest rate meeting the targets (serve/run.py)."""
DEFAULT_POOL = 16
MAX_STUDY_REQUESTS = 100_000
"""Most requests one serving run of a study takes (a capacity search makes up to 48 runs)."""

SERVING_METRICS = (
    "stack_used",
    "tp_used",
    "rate_per_s",
    "capacity_rate_per_s",
    "dense_capacity_rate_per_s",
    "capacity_vs_dense",
    "ttft_p99_s",
    "dense_ttft_p99_s",
    "tpot_p99_s",
    "dense_tpot_p99_s",
    "throughput_tokens_per_s",
    "dense_throughput_tokens_per_s",
    "mean_batch",
    "mean_kept_fraction",
    "dense_iteration_share",
)
"""The columns a finished serving point adds to its axes. rate_per_s is the rate the
figures were served at (the masked run's capacity for load: capacity)."""


def _positive_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: {what} must be a positive integer, got {value!r:.40}")
    return value


def check_workload(raw: Any, where: str) -> dict[str, Any]:
    """The serving workload with its defaults, validated."""
    if not isinstance(raw, dict) or set(raw) - set(SERVING_KEYS):
        raise UserError(f"{where}: workload 'serving' keys are {sorted(SERVING_KEYS)}")
    work = {**SERVING_KEYS, **raw}
    n = _positive_int(work["requests"], "serving 'requests'", where)
    if n > MAX_STUDY_REQUESTS:
        raise UserError(f"{where}: serving 'requests' is {n}, more than {MAX_STUDY_REQUESTS} per run")
    if isinstance(work["seed"], bool) or not isinstance(work["seed"], int) or work["seed"] < 0:
        raise UserError(f"{where}: serving 'seed' must be a non-negative integer, got {work['seed']!r:.40}")
    lengths = work["lengths"]
    if isinstance(lengths, dict):
        if set(lengths) != {"prompt_len", "gen_len"}:
            raise UserError(f"{where}: serving 'lengths' as a mapping needs exactly prompt_len and gen_len")
        for k, v in lengths.items():
            _positive_int(v, f"serving lengths {k!r}", where)
    else:
        from dartsim.serve.workload import SHIPPED_TRACES

        if lengths not in SHIPPED_TRACES:
            raise UserError(
                f"{where}: serving 'lengths' must be a shipped request trace ({', '.join(SHIPPED_TRACES)}) "
                f"or {{prompt_len, gen_len}}, got {lengths!r:.40}"
            )
    slo = work["slo"]
    if not isinstance(slo, dict) or set(slo) - set(SLO_KEYS):
        raise UserError(f"{where}: serving 'slo' maps some of {list(SLO_KEYS)} to seconds")
    for k, v in slo.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UserError(f"{where}: serving slo {k!r} must be a positive number of seconds, got {v!r:.40}")
    return work


def check_masks(raw: Any, where: str, folder: Path, digest: Any) -> list[dict[str, Any]]:
    """The `masks` axis: recorded pools (paths relative to the study file, with digests)
    and synthetic independent pools; labels distinct."""
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: field 'masks' must be a non-empty list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - MASK_KEYS or not isinstance(item.get("label"), str):
            raise UserError(
                f"{where}: each masks entry is a mapping with a 'label' and one of 'traces' or 'synthetic', "
                f"got {item!r:.60}"
            )
        if ("traces" in item) == ("synthetic" in item):
            raise UserError(f"{where}: masks {item['label']!r}: give one of 'traces' or 'synthetic'")
        if "traces" in item:
            traces = item["traces"]
            if "pool" in item:
                raise UserError(f"{where}: masks {item['label']!r}: 'pool' applies to synthetic masks")
            if not isinstance(traces, list) or not traces or not all(isinstance(t, str) for t in traces):
                raise UserError(
                    f"{where}: masks {item['label']!r}: 'traces' must be a non-empty list of paths"
                )
            from dartsim.study.spec import resolved

            paths = [resolved(folder / t, where) for t in traces]
            out.append(
                {
                    "label": item["label"],
                    "traces": [str(p) for p in paths],
                    "traces_sha256": [digest(p, where) for p in paths],
                }
            )
        else:
            k = item["synthetic"]
            if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k < 1:
                raise UserError(
                    f"{where}: masks {item['label']!r}: 'synthetic' is a sparsity in (0, 1), got {k!r:.40}"
                )
            pool = _positive_int(item.get("pool", DEFAULT_POOL), f"masks {item['label']!r} 'pool'", where)
            out.append({"label": item["label"], "synthetic": float(k), "pool": pool})
    labels = [m["label"] for m in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: masks labels must be distinct, got {labels}")
    return out


def check_load(raw: Any, where: str, slo: dict[str, Any]) -> list[Any]:
    """The `load` axis: request rates (requests/s) and `capacity` (which needs a target)."""
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: field 'load' must be a non-empty list of rates (requests/s) or 'capacity'")
    for value in raw:
        if value == CAPACITY:
            if not slo:
                raise UserError(f"{where}: load 'capacity' needs serving 'slo' targets")
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise UserError(
                f"{where}: 'load' values are positive rates (requests/s) or 'capacity', got {value!r:.40}"
            )
    return list(raw)


def run_serving_point(point: dict[str, Any], hardware: Any, stack: Any) -> dict[str, Any]:
    """One serving point's row (raises UserError when the configuration cannot run)."""
    from dataclasses import replace

    from dartsim.replay.workload import load_traces
    from dartsim.serve.masks import synthetic_pool
    from dartsim.serve.result import Slo
    from dartsim.serve.run import find_capacity, job_at_rate, serve
    from dartsim.serve.sim import ServeJob
    from dartsim.serve.workload import ArrivalProcess, WorkloadSpec
    from dartsim.specs.dtypes import get_dtype
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Precision

    work, masks, load = point["serving"], point["masks"], point["load"]
    spec = load_model_spec(point["model"])
    p = point["precision"]
    precision = Precision(get_dtype(p["weight"]), get_dtype(p["activation"]), get_dtype(p["kv_cache"]))
    if "traces" in masks:
        traces = tuple(load_traces(masks["traces"]))
    else:
        traces = synthetic_pool(spec, masks["synthetic"], masks["pool"], work["seed"])
    lengths = work["lengths"]
    fixed = isinstance(lengths, dict)
    workload = WorkloadSpec(
        ArrivalProcess("poisson", rate_per_s=1.0 if load == CAPACITY else float(load)),
        requests=work["requests"],
        file=None if fixed else lengths,
        prompt_tokens=lengths["prompt_len"] if fixed else None,
        output_tokens=lengths["gen_len"] if fixed else None,
        use_file_arrivals=False,
        seed=work["seed"],
    )
    job = ServeJob(
        spec,
        hardware,
        workload.build(spec.max_position_embeddings),
        traces,
        tp=point["tp"],
        stack=stack,
        precision=precision,
        seed=work["seed"],
    )
    slo = Slo(**work["slo"])
    capacity = dense_capacity = None
    if load == CAPACITY:
        capacity = find_capacity(lambda r: job_at_rate(job, workload, r), slo, True)["capacity_rate_per_s"]
        dense_capacity = find_capacity(lambda r: job_at_rate(job, workload, r), slo, False)[
            "capacity_rate_per_s"
        ]
        if capacity is None:
            raise UserError(f"no rate meets the targets {work['slo']} with masks {masks['label']!r}")
        job = job_at_rate(job, workload, capacity)
    rate = capacity if load == CAPACITY else float(load)
    outcome = serve(replace(job, progress=False), slo, compare_dense=True)
    mine, dense = outcome.payload, outcome.payload["dense"]
    return {
        "stack_used": mine["setup"]["stack"],
        "tp_used": mine["setup"]["tp"],
        "rate_per_s": rate,
        "capacity_rate_per_s": capacity,
        "dense_capacity_rate_per_s": dense_capacity,
        "capacity_vs_dense": capacity / dense_capacity if capacity and dense_capacity else None,
        "ttft_p99_s": mine["ttft_s"]["p99"],
        "dense_ttft_p99_s": dense["ttft_s"]["p99"],
        "tpot_p99_s": mine["tpot_s"]["p99"],
        "dense_tpot_p99_s": dense["tpot_s"]["p99"],
        "throughput_tokens_per_s": mine["throughput_tokens_per_s"],
        "dense_throughput_tokens_per_s": dense["throughput_tokens_per_s"],
        "mean_batch": mine["mean_batch"],
        "mean_kept_fraction": mine["mean_kept_fraction"],
        "dense_iteration_share": mine["dense_iteration_share"],
    }
