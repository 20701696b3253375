"""Running a study (study/spec.py) point by point: each point replays its workload as DART
and dense and becomes one result row. A finished point is saved at once as its own file
under OUT/points/, so a re-run skips it and an interruption loses only the points in
flight. Points run in parallel worker processes; the results do not depend on how many."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.study.spec import point_key

METRICS = (
    "stack_used",
    "tp_used",
    "time_s",
    "dense_time_s",
    "speedup",
    "ttft_s",
    "tpot_s",
    "dense_tpot_s",
    "bytes",
    "dense_bytes",
    "attention_share_time",
    "dense_attention_share_time",
    "mlp_share_time",
    "dense_mlp_share_time",
    "energy_per_token_j",
    "dense_energy_per_token_j",
)
"""The columns a finished point adds to its axes (times in seconds, bytes per device; energy
per generated token on all devices, empty where the hardware has no energy section)."""


def hardware_of(entry: dict[str, Any]) -> Any:
    """The point's device: a preset or file, with `set` fields replaced and `scale` fields
    multiplied (each change noted in the field's source)."""
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.hardware_yaml import hardware_to_yaml_dict, override

    hw = load_hardware_spec(entry["preset"])
    changes = dict(entry["set"])  # None removes a field that no longer applies
    if entry["scale"]:
        data = hardware_to_yaml_dict(hw)
        for path, factor in entry["scale"].items():
            node: Any = data
            for part in path.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise UserError(f"study hardware {entry['label']!r}: unknown field {path!r}")
                node = node[part]
            if isinstance(node, bool) or not isinstance(node, (int, float)):
                raise UserError(f"study hardware {entry['label']!r}: field {path!r} is not a number")
            changes[path] = (
                type(node)(node * factor)
                if isinstance(node, int) and float(factor).is_integer()
                else node * factor
            )
    if changes:
        hw = override(hw, changes, f"study {entry['label']}")
    return hw


def stack_of(entry: str | dict[str, str] | None, hw: Any) -> Any:
    """The point's software stack on its device (None: the hardware's default)."""
    from dartsim.specs.stack import default_stack, stack_for

    if entry is None:
        return default_stack(hw)
    return stack_for(entry["file"] if isinstance(entry, dict) else entry, hw)


@functools.lru_cache(maxsize=8)
def _trace(path: str) -> Any:
    from dartsim.trace import load_trace

    return load_trace(path)


def _workload(point: dict[str, Any], spec: Any) -> list[Any]:
    if "traces" in point:
        return [_trace(p) for p in point["traces"]]
    from dartsim.policies.dart.synth import synth_trace

    s = point["synthetic"]
    return [
        synth_trace(
            spec,
            point["prompt_len"],
            point["gen_len"],
            s["retriggers"],
            point["sparsity"],
            s["allocation"],
            seed=i,
        )
        for i in range(point["batch"])
    ]


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """One point's result: `{"key", "point", "row"}`, or `"skipped"` with the reason when
    the point cannot run (the shard does not fit, the device lacks the format)."""
    from dartsim.replay.job import ReplayJob, prepare, run_prepared
    from dartsim.specs.dtypes import get_dtype
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import Precision

    key = point_key(point)
    if "serving" in point:
        return _serving_point(key, point)
    try:
        spec = load_model_spec(point["model"])
        hw = hardware_of(point["hardware"])
        p = point["precision"]
        precision = Precision(get_dtype(p["weight"]), get_dtype(p["activation"]), get_dtype(p["kv_cache"]))
        stack = stack_of(point.get("stack"), hw)
        job = ReplayJob(
            tuple(_workload(point, spec)),
            spec,
            hw,
            stack=stack,
            tp=point["tp"],
            mask_apply=point["mask_apply"],
            precision=precision,
            compare_dense=True,
        )
        prepared = prepare(job)  # what cannot run is a skip; what fails while running is not
    except UserError as exc:
        return {"key": key, "point": point, "skipped": str(exc)}
    result = run_prepared(prepared)
    run, dense = result.run, result.dense
    assert dense is not None
    sc, dc = run.components, dense.components
    row = {
        "stack_used": result.setup.stack,
        "tp_used": result.setup.tp,
        "time_s": run.totals.time_s,
        "dense_time_s": dense.totals.time_s,
        "speedup": result.speedup,
        "ttft_s": run.ttft_s,
        "tpot_s": run.tpot_s,
        "dense_tpot_s": dense.tpot_s,
        "bytes": run.totals.bytes,
        "dense_bytes": dense.totals.bytes,
        "attention_share_time": sc["attention"].share_time,
        "dense_attention_share_time": dc["attention"].share_time,
        "mlp_share_time": sc["mlp"].share_time,
        "dense_mlp_share_time": dc["mlp"].share_time,
        "energy_per_token_j": run.power.get("energy_per_token_j"),
        "dense_energy_per_token_j": dense.power.get("energy_per_token_j"),
    }
    return {"key": key, "point": point, "row": row}


def _serving_point(key: str, point: dict[str, Any]) -> dict[str, Any]:
    from dartsim.study.serving import run_serving_point

    try:
        hw = hardware_of(point["hardware"])
        row = run_serving_point(point, hw, stack_of(point.get("stack"), hw))
    except UserError as exc:
        return {"key": key, "point": point, "skipped": str(exc)}
    return {"key": key, "point": point, "row": row}


def _saved_point(path: Path, key: str) -> dict[str, Any] | None:
    """A saved point's result, or None when the file is not one (not UTF-8, not JSON, not an
    object, another key, no row and no reason): such a file is rerun, never trusted."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(found, dict) or found.get("key") != key or not isinstance(found.get("point"), dict):
        return None
    if not isinstance(found.get("row"), dict) and not isinstance(found.get("skipped"), str):
        return None
    return found


def run_study(
    study: dict[str, Any],
    out: Path,
    jobs: int,
    progress: bool = False,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run the points not yet saved under out/points/ and return every point's result in
    the study's order. With `scheduler` (a Dask scheduler address) the points run on that
    cluster instead of local processes; the results are the same."""
    from dartsim.fileio import atomic_write_text, check_folder_writable

    folder = out / "points"
    check_folder_writable(out)
    check_folder_writable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the folder: {exc.strerror or exc}") from None
    results: dict[str, dict[str, Any]] = {}
    for point in study["points"]:
        key = point_key(point)
        saved = folder / f"{key}.json"
        if saved.is_file():
            found = _saved_point(saved, key)
            if found is None:
                saved.unlink()  # half-written, damaged or not a point: run it again
            else:
                results[key] = found
    todo = [p for p in study["points"] if point_key(p) not in results]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=study["name"], unit="point", file=sys.stderr)

    def save(result: dict[str, Any]) -> None:
        atomic_write_text(
            folder / f"{result['key']}.json", json.dumps(result, sort_keys=True, indent=1) + "\n"
        )
        results[result["key"]] = result
        if bar is not None:
            bar.update(1)

    try:
        if scheduler is not None:
            for result in _on_dask(scheduler, todo):
                save(result)
        elif jobs <= 1 or len(todo) <= 1:
            for point in todo:
                save(run_point(point))
        else:
            # forkserver, not fork: forking a process that already runs threads (torch's
            # pools, a Dask client) can deadlock the child
            context = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context)
            try:
                futures = [pool.submit(run_point, p) for p in todo]
                for future in as_completed(futures):
                    save(future.result())
            except BaseException:  # Ctrl-C, SIGTERM (Terminated), a failing point
                _stop(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return [results[point_key(p)] for p in study["points"]]


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the queued points and end the running ones now: an interrupted study keeps the
    points already saved and leaves no worker behind (the executor would otherwise run
    every queued point before returning)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # CPython's worker table
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=WORKER_JOIN_TIMEOUT_S)


WORKER_JOIN_TIMEOUT_S = 5.0
"""How long an interrupted study waits for each terminated worker to exit."""


def _on_dask(address: str, points: list[dict[str, Any]]) -> Any:
    """Results of `points` run on the Dask cluster at `address`, as they finish. The
    workers need dartsim installed and the study's trace files at the same paths."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UserError(
            "--scheduler needs Dask's distributed scheduler: pip install 'dartsim[dask]'"
        ) from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"--scheduler {address}: cannot connect ({exc})") from None
    try:
        futures = client.map(run_point, points, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()


DASK_CONNECT_TIMEOUT_S = 10
"""How long to wait for a Dask scheduler before saying it cannot be reached."""


def default_jobs() -> int:
    """Worker processes by default: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
