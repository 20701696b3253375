"""A declarative architecture study (`dartsim study STUDY.yaml`): what to replay, on what,
and over which axes. Loading validates every key and value and expands the axes into
points; each point is a plain dict, so it can be hashed, saved and sent to a worker.

    name: bandwidth-70b                 # required
    description: ...                    # optional
    workload:                           # exactly one of traces or synthetic
      traces: [../traces/two-topic-70.pt]   # paths relative to the study file; one batch
      synthetic: {prompt_len: 128, gen_len: 512, retriggers: 2, allocation: dart}
    models: [llama-3.1-70b]
    hardware:                           # presets or files, each optionally changed
      - l40s
      - {preset: h100-sxm, label: h100-bw-x2, scale: {memory.peak_bandwidth_gb_per_s: 2}}
      - {preset: h100-sxm, label: h100-fast-link, set: {link.bandwidth_gb_per_s: 900}}
    stacks: [default, trtllm-0.9, vllm]  # software stacks (default: each hardware's own)
    tp: [auto, 4]
    mask_apply: [compact]
    precision: [{weight: fp8, activation: fp16, kv_cache: fp8}]
    batch: [1, 8]                       # synthetic workloads only
    sparsity: [0.5, 0.7]                # synthetic workloads only
    prompt_len: [128, 2048]             # synthetic only (default: the workload's)
    gen_len: [256]                      # synthetic only (default: the workload's)

A serving study (`workload: serving`) serves a stream of requests instead, over the axes
`masks` (mask pools) and `load` (request rates or `capacity`); study/serving.py says how.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.specs.strict_yaml import read_yaml

SYNTHETIC_AXES = ("batch", "sparsity", "prompt_len", "gen_len")
"""Axes that apply to synthetic workloads only (a trace fixes them)."""
SERVING_AXES = ("masks", "load")
"""Axes that apply to serving workloads only (study/serving.py)."""
WORKLOADS = ("traces", "synthetic", "serving")
TOP_KEYS = {
    "name",
    "description",
    "workload",
    "models",
    "hardware",
    "stacks",
    "tp",
    "mask_apply",
    "precision",
    *SYNTHETIC_AXES,
    *SERVING_AXES,
}
DEFAULT_STACK = "default"
"""A `stacks` entry meaning each hardware's own default stack."""
SYNTHETIC_KEYS = {"prompt_len": 128, "gen_len": 256, "retriggers": 0, "allocation": "dart"}
PRECISION_KEYS = {"weight": "fp8", "activation": "fp16", "kv_cache": "fp8"}
HARDWARE_KEYS = {"preset", "label", "set", "scale"}
ALLOCATIONS = ("dart", "uniform", "dense")
"""Synthetic keep-ratio allocations (trace/synth.py)."""
MAX_POINTS = 10_000
"""Largest grid a study may expand to (a typo in an axis should not launch a week of work)."""


def resolved(path: Path, where: str) -> Path:
    """`path` made absolute with its links followed; a link loop is the user's error in one
    line (Path.resolve raises RuntimeError or OSError on one)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise UserError(f"{where}: {path}: cannot be resolved (a symbolic link loop?): {exc}") from None


def _list(raw: dict[str, Any], key: str, where: str, default: list[Any]) -> list[Any]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: field {key!r} must be a non-empty list, got {value!r:.60}")
    return value


def _digest(path: Path, where: str) -> str:
    """SHA-256 of a file the study reads: part of each point's key, so a saved point is
    not reused once the file it was computed from has changed."""
    if not path.is_file():
        raise UserError(f"{where}: {path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_model_file(name: str) -> bool:
    """A models entry naming a config.json (or a folder holding one), not a preset: the rule
    load_model_spec applies."""
    return name.endswith(".json") or "/" in name or Path(name).exists()


def _models(names: list[Any], where: str, folder: Path) -> list[Any]:
    """Preset names as they are; config.json paths relative to the study file, absolute."""
    out = []
    for name in names:
        if isinstance(name, str) and _is_model_file(name):
            name = str(resolved(folder / name, where))
        out.append(name)
    return out


def _with_model_digest(point: dict[str, Any], where: str) -> dict[str, Any]:
    """A point whose model is a config.json carries the file's digest: editing the file
    changes the point's key, so a resumed study does not reuse a point computed from the old one."""
    model = point["model"]
    if isinstance(model, str) and _is_model_file(model):
        path = Path(model)
        point["model_sha256"] = _digest(path / "config.json" if path.is_dir() else path, where)
    return point


def _file_digest(preset: str, where: str) -> dict[str, str]:
    """A hardware file's digest (presets ship with dartsim and need none)."""
    return {"sha256": _digest(Path(preset), where)} if preset.endswith((".yaml", ".yml")) else {}


def _device(name: str, folder: Path) -> str:
    """A preset name as is; a hardware file's path relative to the study file."""
    return str(resolved(folder / name, "a hardware entry")) if name.endswith((".yaml", ".yml")) else name


def _hardware(item: Any, where: str, folder: Path) -> dict[str, Any]:
    if isinstance(item, str):
        preset = _device(item, folder)
        return {
            "preset": preset,
            "label": Path(item).stem,
            "set": {},
            "scale": {},
            **_file_digest(preset, where),
        }
    if not isinstance(item, dict) or "preset" not in item:
        raise UserError(
            f"{where}: each hardware entry is a preset name or a mapping with 'preset', got {item!r:.60}"
        )
    unknown = set(item) - HARDWARE_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown hardware key(s) {sorted(unknown)} (valid: {sorted(HARDWARE_KEYS)})"
        )
    changes = {"set": item.get("set", {}), "scale": item.get("scale", {})}
    for kind, mapping in changes.items():
        if not isinstance(mapping, dict):
            raise UserError(f"{where}: hardware {kind!r} must map field paths to numbers")
        for path, value in mapping.items():
            allowed = (bool, int, float, str, type(None)) if kind == "set" else (int, float)
            if (isinstance(value, bool) and kind == "scale") or not isinstance(value, allowed):
                what = "a number, a string, true/false or null (remove)" if kind == "set" else "a number"
                raise UserError(f"{where}: hardware {kind} {path!r} must be {what}, got {value!r:.60}")
            if kind == "scale" and isinstance(value, (int, float)) and value <= 0:
                raise UserError(f"{where}: hardware scale {path!r} must be positive, got {value}")
    label = item.get("label")
    if label is None:
        label = item["preset"] if not (changes["set"] or changes["scale"]) else None
    if not isinstance(label, str) or not label:
        raise UserError(f"{where}: a changed hardware entry needs a 'label' (preset {item['preset']!r})")
    preset = _device(str(item["preset"]), folder)
    return {"preset": preset, "label": label, **changes, **_file_digest(preset, where)}


def _stack(item: Any, where: str, folder: Path) -> str | dict[str, str] | None:
    """None for each hardware's default; a preset name; a stack file with its digest."""
    if not isinstance(item, str) or not item:
        raise UserError(
            f"{where}: each stacks entry is a preset name, a YAML file or 'default', got {item!r:.60}"
        )
    if item == DEFAULT_STACK:
        return None
    if item.endswith((".yaml", ".yml")):
        path = str(resolved(folder / item, where))
        return {"file": path, "sha256": _digest(Path(path), where)}
    from dartsim.specs.stack import stack_preset_names

    if item not in stack_preset_names():
        valid = ", ".join([DEFAULT_STACK, *stack_preset_names()])
        raise UserError(f"{where}: unknown software stack {item!r} (valid: {valid})")
    return item


def _precision(entry: Any, where: str) -> dict[str, str]:
    if not isinstance(entry, dict) or set(entry) - set(PRECISION_KEYS):
        raise UserError(f"{where}: a precision entry maps {sorted(PRECISION_KEYS)} to format names")
    merged = {**PRECISION_KEYS, **entry}
    if not all(isinstance(v, str) for v in merged.values()):
        raise UserError(f"{where}: precision formats are names such as fp8 or bf16, got {entry!r:.60}")
    return merged


def load_study(path: Path) -> dict[str, Any]:
    """The validated study, with `points` (every combination of the axes) and `folder`
    (where relative paths start)."""
    where = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a study is a mapping")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)} (valid: {sorted(TOP_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: field 'name' must be a non-empty string")
    workload = raw.get("workload")
    if not isinstance(workload, dict) or len(workload) != 1 or set(workload) - set(WORKLOADS):
        raise UserError(f"{where}: 'workload' must hold exactly one of {', '.join(map(repr, WORKLOADS))}")
    folder = resolved(path, where).parent
    if "serving" not in workload:
        for axis in SERVING_AXES:
            if axis in raw:
                raise UserError(f"{where}: {axis!r} applies to serving workloads only")
    if "serving" in workload:
        return _serving_study(raw, workload["serving"], name, where, folder)
    if "traces" in workload:
        traces = workload["traces"]
        if not isinstance(traces, list) or not traces or not all(isinstance(t, str) for t in traces):
            raise UserError(f"{where}: workload 'traces' must be a non-empty list of paths")
        paths = [resolved(folder / t, where) for t in traces]
        work: dict[str, Any] = {
            "traces": [str(p) for p in paths],
            "traces_sha256": [_digest(p, where) for p in paths],
        }
        for axis in SYNTHETIC_AXES:
            if axis in raw:
                raise UserError(f"{where}: {axis!r} applies to synthetic workloads only (a trace fixes it)")
    else:
        synthetic = workload["synthetic"]
        if not isinstance(synthetic, dict) or set(synthetic) - set(SYNTHETIC_KEYS):
            raise UserError(f"{where}: workload 'synthetic' keys are {sorted(SYNTHETIC_KEYS)}")
        work = {"synthetic": {**SYNTHETIC_KEYS, **synthetic}}
        retriggers, allocation = work["synthetic"]["retriggers"], work["synthetic"]["allocation"]
        if isinstance(retriggers, bool) or not isinstance(retriggers, int) or retriggers < 0:
            raise UserError(
                f"{where}: synthetic 'retriggers' must be a non-negative integer, got {retriggers!r:.40}"
            )
        if allocation not in ALLOCATIONS:
            raise UserError(f"{where}: synthetic 'allocation' must be one of {', '.join(ALLOCATIONS)}")
    axes = {
        "model": _models(_list(raw, "models", where, []), where, folder),
        "hardware": [_hardware(h, where, folder) for h in _list(raw, "hardware", where, [])],
        "stack": [_stack(x, where, folder) for x in _list(raw, "stacks", where, [DEFAULT_STACK])],
        "tp": [str(t) for t in _list(raw, "tp", where, ["auto"])],
        "mask_apply": _list(raw, "mask_apply", where, ["compact"]),
        "precision": [_precision(p, where) for p in _list(raw, "precision", where, [{}])],
        "batch": _list(raw, "batch", where, [1]),
        "sparsity": _list(raw, "sparsity", where, [0.7]) if "synthetic" in work else [None],
    }
    if "synthetic" in work:
        base = work["synthetic"]
        axes["prompt_len"] = _list(raw, "prompt_len", where, [base["prompt_len"]])
        axes["gen_len"] = _list(raw, "gen_len", where, [base["gen_len"]])
        for axis in ("batch", "prompt_len", "gen_len"):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in axes[axis]):
                raise UserError(f"{where}: {axis!r} values must be positive integers, got {axes[axis]}")
    _check_common(raw, axes, where)
    for value in axes["sparsity"]:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1
        ):
            raise UserError(f"{where}: 'sparsity' values must lie in [0, 1), got {value!r:.40}")
    for mode in axes["mask_apply"]:
        if mode not in ("compact", "gather"):
            raise UserError(f"{where}: mask_apply must be compact or gather, got {mode!r:.40}")
    names = list(axes)
    points = [
        _with_model_digest(dict(zip(names, combo, strict=True)) | work, where)
        for combo in itertools.product(*axes.values())
    ]
    return {"name": name, "description": raw.get("description", ""), "points": points, "folder": str(folder)}


def _serving_study(raw: dict[str, Any], serving: Any, name: str, where: str, folder: Path) -> dict[str, Any]:
    """A serving study: its own axes (masks, load) beside the device ones."""
    from dartsim.study.serving import check_load, check_masks, check_workload

    work = check_workload(serving, where)
    for axis in (*SYNTHETIC_AXES, "mask_apply"):
        if axis in raw:
            raise UserError(f"{where}: {axis!r} does not apply to a serving workload")
    axes = {
        "model": _models(_list(raw, "models", where, []), where, folder),
        "hardware": [_hardware(h, where, folder) for h in _list(raw, "hardware", where, [])],
        "stack": [_stack(x, where, folder) for x in _list(raw, "stacks", where, [DEFAULT_STACK])],
        "tp": [str(t) for t in _list(raw, "tp", where, ["auto"])],
        "precision": [_precision(p, where) for p in _list(raw, "precision", where, [{}])],
        "masks": check_masks(raw.get("masks"), where, folder, _digest),
        "load": check_load(raw.get("load"), where, work["slo"]),
    }
    _check_common(raw, axes, where)
    names = list(axes)
    points = [
        _with_model_digest(dict(zip(names, combo, strict=True)) | {"serving": work}, where)
        for combo in itertools.product(*axes.values())
    ]
    return {"name": name, "description": raw.get("description", ""), "points": points, "folder": str(folder)}


def _resolve(axes: dict[str, list[Any]], where: str) -> None:
    """Every model, device (with its changes), stack, precision and TP value resolves: a
    typo is the user's error, one line and exit 2 before any point runs, never a skipped
    point. (What does not fit a device, or a format it lacks, stays a skip of that point.)"""
    from dartsim.specs.dtypes import get_dtype
    from dartsim.specs.model import load_model_spec
    from dartsim.study.runner import hardware_of

    def named(what: str, error: UserError) -> UserError:
        return UserError(f"{where}: {what}: {error}")

    for model in axes["model"]:
        try:
            load_model_spec(model)
        except UserError as exc:
            raise named(f"models entry {model!r}", exc) from None
    for entry in axes["hardware"]:
        try:
            hardware_of(entry)
        except UserError as exc:
            raise named(f"hardware {entry['label']!r}", exc) from None
    for precision in axes["precision"]:
        for role, name in precision.items():
            try:
                get_dtype(name)
            except UserError as exc:
                raise named(f"precision {role}", exc) from None
    for tp in axes["tp"]:
        if tp != "auto" and not (tp.isdigit() and int(tp) >= 1):
            raise UserError(f"{where}: 'tp' values must be positive integers or 'auto', got {tp!r}")


def _check_common(raw: dict[str, Any], axes: dict[str, list[Any]], where: str) -> None:
    """Model names, TP values, the grid's size and distinct hardware labels."""
    if not all(isinstance(m, str) for m in axes["model"]):
        raise UserError(f"{where}: 'models' must be preset names or config.json paths")
    if not all(
        isinstance(t, (str, int)) and not isinstance(t, bool) for t in _list(raw, "tp", where, ["auto"])
    ):
        raise UserError(f"{where}: 'tp' values must be positive integers or 'auto'")
    count = 1
    for values in axes.values():
        count *= len(values)
    if count > MAX_POINTS:
        raise UserError(f"{where}: the axes expand to {count} points, more than {MAX_POINTS}")
    labels = [h["label"] for h in axes["hardware"] if isinstance(h, dict)]
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: hardware labels must be distinct, got {labels}")
    _resolve(axes, where)


def _located(value: Any) -> Any:
    """`value` without the paths of files it also carries a digest of: a point's key names
    what it was computed from, not where that sat, so a saved point is found again from
    another checkout."""
    if isinstance(value, list):
        return [_located(v) for v in value]
    if not isinstance(value, dict):
        return value
    drop = set()
    if "traces_sha256" in value:
        drop.add("traces")
    if "model_sha256" in value:
        drop.add("model")
    if "sha256" in value:
        drop |= {"file", "preset"}
    return {k: _located(v) for k, v in value.items() if k not in drop}


def point_key(point: dict[str, Any]) -> str:
    """A short stable name for a point: the hash of its canonical JSON (file paths that a
    digest stands for left out)."""
    return hashlib.sha256(json.dumps(_located(point), sort_keys=True).encode()).hexdigest()[:16]
