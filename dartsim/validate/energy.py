"""`dartsim validate --energy`: measured joules and watts beside `dartsim serve`'s energy.

The rows (published_energy/energy_rows.csv) stay as collected; the mapping file
(published-energy.yaml) says which are simulated, how (a closed loop of `max_num_seqs`
users with the row's mean output length on the device's preset), which part of the split
each is in, and what may be fitted: `energy.static_w` only, on the calibration rows'
average power. A fit outside the band the sources give fails and is not applied.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from dartsim.errors import UserError
from dartsim.fileio import read_text

MAPPING_FILE = "published-energy.yaml"
MAPPING_FORMAT = "dartsim-energy-validation"
SEQS = re.compile(r"max_num_seqs=(\d+)")


def load(path: str | None = None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The mapping file (default: the shipped one) and the rows it names."""
    from dartsim.validate.mapping_file import read_mapping

    required = ("rows", "split", "devices", "models", "precision", "prompt_tokens", "metrics", "sources")
    doc, where = read_mapping(path, MAPPING_FILE, MAPPING_FORMAT, "energy-validation", required)
    rows = list(csv.DictReader(io.StringIO(read_text(where.parent / str(doc["rows"])))))
    if not rows:
        raise UserError(f"{where.parent / doc['rows']}: no rows")
    return doc, rows


def _case(row: dict[str, str], doc: dict[str, Any]) -> tuple[str, str, int, int, int] | None:
    """(model preset, hardware preset, devices, users, output tokens), or None when the
    mapping does not cover the row."""
    if row["source_id"] not in doc["sources"] or row["metric"] not in doc["metrics"]:
        return None
    if row["device"] not in doc["devices"] or row["model"] not in doc["models"]:
        return None
    seqs = SEQS.search(row["batch_or_concurrency"])
    if seqs is None:
        return None
    return (
        doc["models"][row["model"]],
        doc["devices"][row["device"]],
        int(row["num_devices"]),
        int(seqs.group(1)),
        round(float(row["output_len"])),
    )


def simulate(case: tuple[str, str, int, int, int], doc: dict[str, Any]) -> dict[str, Any]:
    """`dartsim serve`'s payload for one case (dense, closed loop, BF16)."""
    from dartsim.serve.result import Slo
    from dartsim.serve.run import serve
    from dartsim.serve.scheduler import default_scheduler
    from dartsim.serve.sim import ServeJob
    from dartsim.serve.workload import ArrivalProcess, WorkloadSpec
    from dartsim.specs.dtypes import get_dtype
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Precision

    model, device, devices, users, output = case
    spec, hw = load_model_spec(model), load_hardware_spec(device)
    p = get_dtype(doc["precision"])
    n = users * int(doc.get("requests_per_user", 4))
    workload = WorkloadSpec(
        ArrivalProcess("closed", concurrency=users),
        requests=n,
        prompt_tokens=int(doc["prompt_tokens"]),
        output_tokens=output,
    )
    base = default_scheduler(hw)
    job = ServeJob(
        spec,
        hw,
        workload.build(spec.max_position_embeddings),
        tp=devices,
        precision=Precision(p, p, p),
        scheduler=replace(base, max_num_seqs=users),
        concurrency=users,
    )
    return serve(job, Slo()).payload


def _predicted(payload: dict[str, Any], metric: str, devices: int, static_shift_w: float) -> float:
    """The figure `metric` names, with every device's static power moved by `static_shift_w`
    (power and energy are linear in it: a fit needs no re-run)."""
    extra_j = static_shift_w * devices * payload["duration_s"]
    if metric == "energy_per_token_j":
        return (payload["energy_j"] + extra_j) / payload["output_tokens"]
    return (payload["avg_power_w"] + static_shift_w) * devices  # all devices, as ML.ENERGY sums them


def evaluate(
    doc: dict[str, Any], rows: list[dict[str, str]], fit: bool, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every covered row with its prediction and error, both parts, and the fit's outcome."""
    from dartsim.specs.hardware import load_hardware_spec

    cases: dict[tuple[str, str, int, int, int], dict[str, Any]] = {}
    covered = [(r, c) for r in rows if (c := _case(r, doc)) is not None]
    for k, (_row, case) in enumerate(covered):
        if case not in cases:
            if progress is not None:
                progress(f"[{k + 1}/{len(covered)}] {case[0]} on {case[2]} x {case[1]}, {case[3]} users")
            cases[case] = simulate(case, doc)
    calibration = set(doc["split"]["calibration_models"])
    shift, outcome = 0.0, None
    hw_static = {c[1]: load_hardware_spec(c[1]).energy for c in cases}
    if fit:
        gaps = [
            float(r["value"]) / c[2] - cases[c]["avg_power_w"]
            for r, c in covered
            if r["model"] in calibration and doc["metrics"][r["metric"]] == "power_all_devices_w"
        ]
        device = next(iter(hw_static))
        spec = hw_static[device]
        if gaps and spec is not None:
            fitted = spec.static_w + float(np.median(gaps))
            ok = spec.static_w_low <= fitted <= spec.static_w_high
            outcome = {
                "field": "energy.static_w",
                "device": device,
                "before_w": spec.static_w,
                "fitted_w": fitted,
                "band_w": [spec.static_w_low, spec.static_w_high],
                "applied": ok,
            }
            shift = fitted - spec.static_w if ok else 0.0
    out = []
    for row, case in covered:
        metric = doc["metrics"][row["metric"]]
        value = _predicted(cases[case], metric, case[2], shift)
        measured = float(row["value"])
        out.append(
            {
                "source": row["source_id"],
                "part": "calibration" if row["model"] in calibration else "held-out",
                "model": case[0],
                "hardware": case[1],
                "devices": case[2],
                "max_num_seqs": case[3],
                "output_tokens": case[4],
                "metric": row["metric"],
                "measured": measured,
                "predicted": value,
                "error": value / measured - 1.0 if measured else math.nan,
                "predicted_tpot_s": cases[case]["tpot_s"]["mean"],
                "predicted_mean_batch": cases[case]["mean_batch"],
            }
        )
    skipped = len(rows) - len(covered)
    return {"rows": out, "fit": outcome, "not_simulated": skipped}
