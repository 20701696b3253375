"""`dartsim validate --serving`: published serving measurements beside `dartsim serve`.

The measurements (published_serving/rows.csv) are kept as their sources print them; the
mapping file (published-serving.yaml) says how each row becomes a serving run: device and
model presets, precision, software stack, scheduler, arrival process and request count, and
which part of the split the row belongs to. A row the mapping cannot express (a dataset
dartsim does not ship, a device without a preset, a figure dartsim does not report) is kept
with the reason it was not simulated, so the report accounts for every row.

Rows that share a configuration (same source, device, model, lengths and load) share one
simulation: a source's TTFT, TPOT and throughput at one load come from the same run.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dartsim.errors import UserError
from dartsim.fileio import read_text

MAPPING_FILE = "published-serving.yaml"
MAPPING_FORMAT = "dartsim-serving-validation"
PARTS = ("calibration", "held-out")
SEED = 0
"""Every simulated run uses this seed (the arrival draws of open-loop rows)."""
CSV_COLUMNS = (
    "source_id",
    "device",
    "tp",
    "model",
    "precision",
    "dataset",
    "input_len",
    "output_len",
    "arrival",
    "rate_req_s",
    "concurrency",
    "num_requests",
    "metric",
    "value",
)
OPEN_ARRIVALS = ("poisson", "")
"""Arrival values of open-loop rows ("" where the source gives a rate but no process)."""
ALL_AT_ONCE = ("burst", "offline")
"""Arrival values where every request is issued at the start (rate infinite)."""


@dataclass(frozen=True)
class MeasuredRow:
    """One row of rows.csv with its line number (its id: `source:line`)."""

    line: int
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.fields['source_id']}:{self.line}"

    def number(self, name: str) -> float:
        text = self.fields[name].strip()
        if not text:
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise UserError(f"rows.csv line {self.line}: {name} is not a number: {text!r}") from None


@dataclass(frozen=True)
class Case:
    """One serving run that some rows are compared with."""

    source: str
    device: str
    model: str
    tp: int
    precision: str
    input_tokens: int
    output_tokens: int
    arrival: str  # "poisson" or "closed"
    rate_per_s: float | None
    concurrency: int | None
    requests: int

    def label(self) -> str:
        load = f"{self.rate_per_s:g} req/s" if self.rate_per_s is not None else f"{self.concurrency} users"
        return (
            f"{self.source} {self.model} {self.device} TP{self.tp} {self.precision} "
            f"{self.input_tokens}/{self.output_tokens} {load}"
        )


@dataclass(frozen=True)
class Mapping:
    path: str
    doc: dict[str, Any]
    rows: list[MeasuredRow]

    @property
    def split(self) -> dict[str, Any]:
        return dict(self.doc["split"])

    def part(self, source: str) -> str:
        return "calibration" if source in self.doc["split"]["calibration_sources"] else "held-out"


REQUIRED_KEYS = (
    "format",
    "rows",
    "about",
    "split",
    "devices",
    "models",
    "precisions",
    "metrics",
    "skipped_metrics",
    "sources",
)


def load_mapping(path: str | None = None, rows: str | None = None) -> Mapping:
    """The mapping file (default: the shipped one) and the rows it names (or `rows`)."""
    from dartsim.validate.mapping_file import read_mapping

    doc, where = read_mapping(path, MAPPING_FILE, MAPPING_FORMAT, "serving-validation", REQUIRED_KEYS)
    if not isinstance(doc["split"], dict) or "calibration_sources" not in doc["split"]:
        raise UserError(f"{where}: split needs calibration_sources")
    rows_path = Path(rows) if rows else where.parent / str(doc["rows"])
    return Mapping(str(where), doc, read_rows(rows_path))


def read_rows(path: Path) -> list[MeasuredRow]:
    """rows.csv as `MeasuredRow`s (a missing column or an empty file is a one-line error)."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    # line numbers count the header as line 1, as an editor shows them
    out = [MeasuredRow(reader.line_num, {k: (v or "") for k, v in row.items() if k}) for row in reader]
    if not out:
        raise UserError(f"{path}: no rows")
    return out


def _skip_reason(row: MeasuredRow, m: Mapping) -> str | None:
    """Why `row` cannot be simulated, or None."""
    f, doc = row.fields, m.doc
    source = f["source_id"]
    if source in doc.get("skipped_sources", {}):
        return str(doc["skipped_sources"][source])
    if source not in doc["sources"]:
        return "no mapping for this source in the validation file"
    for key, why in doc.get("skipped_datasets", {}).items():
        if f["dataset"].strip().lower() == key:
            return str(why)
    if f["metric"] in doc["skipped_metrics"]:
        return str(doc["skipped_metrics"][f["metric"]])
    if f["metric"] not in doc["metrics"]:
        return f"dartsim reports no figure for metric {f['metric']!r}"
    if f["device"] not in doc["devices"]:
        return f"no dartsim preset for device {f['device']!r}"
    if f["model"] not in doc["models"]:
        return f"no model config for {f['model']!r}"
    if f["precision"] not in doc["precisions"]:
        return f"no precision mapping for {f['precision']!r}"
    return None


def _case(row: MeasuredRow, m: Mapping) -> Case:
    f, src = row.fields, m.doc["sources"][row.fields["source_id"]]
    isl, osl = row.number("input_len"), row.number("output_len")
    if not (isl >= 1 and osl >= 1):
        raise UserError(f"rows.csv line {row.line}: input_len and output_len must be >= 1")
    arrival = f["arrival"].strip()
    rate, users, stated = row.number("rate_req_s"), row.number("concurrency"), row.number("num_requests")
    per_user = int(src.get("requests_per_user", 1))
    if arrival in ALL_AT_ONCE:
        n = int(stated)
        return _make(row, "closed", None, n, n)
    if arrival == "closed":
        n = int(stated) if math.isfinite(stated) else int(users) * per_user
        return _make(row, "closed", None, int(users), n)
    if arrival in OPEN_ARRIVALS:
        if arrival == "" and src.get("unstated_arrival") != "poisson":
            raise UserError(
                f"rows.csv line {row.line}: no arrival process and the source names none to assume"
            )
        return _make(row, "poisson", float(rate), None, int(stated))
    raise UserError(f"rows.csv line {row.line}: unknown arrival {arrival!r}")


def _make(row: MeasuredRow, arrival: str, rate: float | None, users: int | None, n: int) -> Case:
    f = row.fields
    return Case(
        source=f["source_id"],
        device=f["device"],
        model=f["model"],
        tp=int(row.number("tp")),
        precision=f["precision"],
        input_tokens=int(row.number("input_len")),
        output_tokens=int(row.number("output_len")),
        arrival=arrival,
        rate_per_s=rate,
        concurrency=users,
        requests=n,
    )


def simulate_case(case: Case, doc: dict[str, Any]) -> dict[str, Any]:
    """`dartsim serve`'s summary for `case` (dense, seed `SEED`)."""
    from dartsim.serve.result import Slo, summary
    from dartsim.serve.scheduler import SchedulerConfig
    from dartsim.serve.sim import ServeJob, simulate
    from dartsim.serve.workload import ArrivalProcess, WorkloadSpec
    from dartsim.specs.dtypes import get_dtype
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.specs.stack import stack_for
    from dartsim.workload import Precision

    src = doc["sources"][case.source]
    p = doc["precisions"][case.precision]
    precision = Precision(get_dtype(p["weight"]), get_dtype(p["activation"]), get_dtype(p["kv_cache"]))
    spec = load_model_spec(doc["models"][case.model])
    hw = load_hardware_spec(doc["devices"][case.device])
    if case.arrival == "closed":
        process = ArrivalProcess("closed", concurrency=case.concurrency)
    else:
        process = ArrivalProcess("poisson", rate_per_s=case.rate_per_s)
    workload = WorkloadSpec(
        process,
        requests=case.requests,
        prompt_tokens=case.input_tokens,
        output_tokens=case.output_tokens,
        seed=SEED,
    )
    job = ServeJob(
        spec,
        hw,
        workload.build(spec.max_position_embeddings),
        tp=case.tp,
        stack=stack_for(src["stack"], hw),
        precision=precision,
        scheduler=SchedulerConfig(**src["scheduler"]),
        concurrency=case.concurrency,
        seed=SEED,
    )
    return summary(simulate(job), Slo())


def predicted(row: MeasuredRow, m: Mapping, run: dict[str, Any]) -> float:
    """The figure of `run` that `row` measured, in the row's units (s or tokens/s)."""
    rule = m.doc["metrics"][row.fields["metric"]]
    value = run[rule["figure"]]
    if "statistic" in rule:
        value = value[rule["statistic"]]
    return float(value)


def _attempt(case: Case, doc: dict[str, Any]) -> dict[str, Any] | UserError:
    try:
        return simulate_case(case, doc)
    except UserError as exc:
        return exc


def _runs(
    cases: dict[Case, list[MeasuredRow]], doc: dict[str, Any], jobs: int
) -> Iterator[tuple[Case, list[MeasuredRow], dict[str, Any] | UserError]]:
    """Each case's summary (or the error that refused it), in case order, on `jobs` processes."""
    if jobs <= 1:
        for case, members in cases.items():
            yield case, members, _attempt(case, doc)
        return
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = [(case, members, pool.submit(_attempt, case, doc)) for case, members in cases.items()]
        for case, members, future in futures:
            yield case, members, future.result()
    finally:  # on an interrupt too: queued cases are dropped, not run
        pool.shutdown(wait=True, cancel_futures=True)


def evaluate(
    m: Mapping, only: str | None = None, progress: Callable[[str], None] | None = None, jobs: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(compared rows, rows not compared with the reason), in file order. `only`: rows
    whose source id contains it; `jobs`: processes that simulate cases side by side (the
    results do not depend on it)."""
    rows = [r for r in m.rows if only is None or only in r.fields["source_id"]]
    if not rows:
        raise UserError(f"--only {only!r} matches no source (sources: {', '.join(_sources(m.rows))})")
    cases: dict[Case, list[MeasuredRow]] = {}
    skipped: list[dict[str, Any]] = []
    for row in rows:
        reason = _skip_reason(row, m)
        if reason is None:
            cases.setdefault(_case(row, m), []).append(row)
        else:
            skipped.append(_skipped(row, m, reason))
    compared: list[dict[str, Any]] = []
    for k, (case, members, run) in enumerate(_runs(cases, m.doc, jobs), 1):
        if progress is not None:
            progress(f"[{k}/{len(cases)}] {case.label()}")
        if isinstance(run, UserError):  # a configuration dartsim refuses (it would not fit, say)
            skipped.extend(_skipped(r, m, f"dartsim refuses the run: {run}") for r in members)
            continue
        for row in members:
            compared.append(_compared(row, case, m, predicted(row, m, run)))
    order = {r.line: i for i, r in enumerate(m.rows)}
    compared.sort(key=lambda r: order[r["line"]])
    skipped.sort(key=lambda r: order[r["line"]])
    return compared, skipped


def _sources(rows: Sequence[MeasuredRow]) -> list[str]:
    return sorted({r.fields["source_id"] for r in rows})


def _base(row: MeasuredRow, m: Mapping) -> dict[str, Any]:
    f = row.fields
    return {
        "id": row.id,
        "line": row.line,
        "source": f["source_id"],
        "part": m.part(f["source_id"]),
        "device": f["device"],
        "model": f["model"],
        "tp": f["tp"],
        "precision": f["precision"],
        "metric": f["metric"],
        "measured": row.number("value"),
    }


def _skipped(row: MeasuredRow, m: Mapping, reason: str) -> dict[str, Any]:
    return {**_base(row, m), "reason": reason}


def _compared(row: MeasuredRow, case: Case, m: Mapping, value: float) -> dict[str, Any]:
    out = _base(row, m)
    out.update(
        preset=m.doc["devices"][case.device],
        model_config=m.doc["models"][case.model],
        stack=m.doc["sources"][case.source]["stack"],
        input_tokens=case.input_tokens,
        output_tokens=case.output_tokens,
        load=f"{case.rate_per_s:g} req/s Poisson"
        if case.rate_per_s is not None
        else f"{case.concurrency} users, {case.requests} requests",
        predicted=value,
        error=value / out["measured"] - 1.0 if out["measured"] else math.nan,
    )
    return out


def summarise(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Median and max |error| per value of `key`, in sorted order."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(abs(r["error"]))
    return [
        {key: k, "rows": len(v), "median_abs_error": float(np.median(v)), "max_abs_error": float(max(v))}
        for k, v in sorted(groups.items())
    ]
