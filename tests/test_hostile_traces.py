"""Hostile and careless traces: every kind ends at load with one line naming the file and the
field, exit status 2 from every command that reads traces, within modest memory."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tracefactory import tiny_trace

from dartsim.errors import UserError
from dartsim.trace import load_trace


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: t[section].__setitem__(key, value)


def _drop(section: str | None, key: str) -> Callable[[dict[str, Any]], None]:
    return lambda t: (t if section is None else t[section]).pop(key)


def _steps(key: str, index: int, value: float) -> Callable[[dict[str, Any]], None]:
    return lambda t: t["steps"][key].__setitem__(index, value)


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no status", _drop(None, "status"), "'status' must be str"),
    ("no synthetic flag", _drop(None, "synthetic"), "'synthetic' must be bool"),
    ("complete but interrupted", lambda t: t.__setitem__("status", "interrupted"), "'complete' is True"),
    ("no model source", _drop("model", "source"), "'model.source' must be str"),
    ("no figure5", _drop(None, "figure5"), "'figure5' must be a mapping"),
    ("empty dart section", lambda t: t.__setitem__("dart", {}), "'dart.variant' is missing"),
    ("string sparsity", _set("dart", "sparsity", "0.5"), "'dart.sparsity' must be int or float"),
    ("sparsity of one", _set("dart", "sparsity", 1.0), "'dart.sparsity' must lie in [0, 1)"),
    ("unknown mode", _set("dart", "mode", "turbo"), "'dart.mode' must be one of"),
    ("NaN step time", _steps("time_s", 2, float("nan")), "'steps.time_s' must hold finite values"),
    ("negative step time", _steps("time_s", 2, -1.0), "'steps.time_s' must hold finite values"),
    (
        "NaN keep ratio",
        lambda t: t["epochs"]["keep_ratio"].__setitem__((0, 1), float("nan")),
        "'epochs.keep_ratio' must hold finite values",
    ),
    (
        "keep ratio that contradicts the kept counts",
        lambda t: t["epochs"]["keep_ratio"].__setitem__((0, 1), 0.9),
        "'epochs.keep_ratio' disagrees with epochs.kept",
    ),
    (
        "10^12 claimed tokens",
        _set("generation", "generated_len", 10**12),
        "'generation.generated_len' must lie",
    ),
    ("prompt length mismatch", _set("generation", "prompt_len", 5), "'generation.prompt_len' is 5"),
    (
        "token ids outside the vocabulary",
        lambda t: t["generation"]["generated_ids"].__setitem__(0, 10**6),
        "'generation.generated_ids' must index",
    ),
    (
        "drift check at a missing step",
        lambda t: t["drift_checks"]["step"].__setitem__(0, 99),
        "'drift_checks.step'",
    ),
    (
        "re-trigger to a missing epoch",
        lambda t: t.__setitem__(
            "retriggers",
            {"step": torch.tensor([4], dtype=torch.int32), "epoch": torch.tensor([7], dtype=torch.int32)},
        ),
        "'retriggers.epoch' must index",
    ),
    ("context of 2^31-1", _steps("context_len", 6, 2**31 - 1), "'steps.context_len' must be the running sum"),
    (
        "context beyond the model",
        lambda t: (
            t["steps"]["tokens"].__setitem__(0, 100),
            t["steps"]["context_len"].add_(94),
            t["generation"].__setitem__("prompt_len", 100),
            t["generation"].__setitem__("prompt_ids", torch.zeros(0, dtype=torch.int64)),
        ),
        "beyond the model's max_position_embeddings 64",
    ),
    ("a second prefill", _steps("phase", 3, 0), "'steps.phase' must be one prefill step"),
    ("10^6 layers", _set("model", "num_layers", 10**6), "'num_hidden_layers' = 1000000 exceeds 1024"),
    ("hidden size 2^40", _set("model", "hidden_size", 2**40), "'hidden_size' = 1099511627776 exceeds"),
    ("figure5 window of zero", lambda t: t["figure5"].__setitem__("window", 0), "'figure5.window' must lie"),
    (
        "stride-0 tensor",
        lambda t: t["figure5"].__setitem__("similarity", torch.zeros(1, dtype=torch.float64).expand(10**9)),
        "is a view of a smaller storage",
    ),
    (
        "deep nesting",
        lambda t: t.__setitem__("extra", _nested(50)),
        "nested deeper than a trace",
    ),
]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(("name", "mutate", "message"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_hostile_trace_is_refused_at_load_naming_the_field(
    tmp_path: Path, name: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    trace = tiny_trace()
    mutate(trace)
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    with pytest.raises(UserError) as err:
        load_trace(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text, (name, text)


def test_every_command_that_reads_traces_ends_hostile_input_with_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = tiny_trace()
    trace["dart"]["sparsity"] = "lots"
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    for args in (
        ("trace", "info", str(path)),
        ("replay", str(path), "--hw", "l40s", "--quiet"),
        ("report", "retriggers", str(path)),
        ("report", "figure5", "--dense", str(path), "--static", str(path), "--dart", str(path),
         "--out", str(tmp_path / "f.png")),
    ):  # fmt: skip
        result = run_cli(*args)
        assert result.code == 2, (args, result.err)
        assert result.err.strip().count("\n") == 0 and "'dart.sparsity'" in result.err, (args, result.err)
    assert not (tmp_path / "f.png").exists()


def _rezip(path: Path, compression: int) -> bytes:
    """The same archive with every entry written with `compression`."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))
    return out.getvalue()


def test_a_compressed_archive_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """A deflated tensor can expand a small file into gigabytes; torch.save never compresses."""
    path = tmp_path / "t.pt"
    torch.save(tiny_trace(), path)
    load_trace(path)  # the plain archive loads
    path.write_bytes(_rezip(path, zipfile.ZIP_DEFLATED))
    with pytest.raises(UserError, match="is compressed"):
        load_trace(path)


def test_an_entry_claiming_more_bytes_than_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save(tiny_trace(), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda e: e.file_size)
    # the central directory's uncompressed-size field (offset 24 in its record) of that entry
    marker = b"PK\x01\x02"
    start = 0
    while True:
        start = data.index(marker, start)
        name_len = int.from_bytes(data[start + 28 : start + 30], "little")
        if data[start + 46 : start + 46 + name_len].decode() == entry.filename:
            break
        start += 4
    data[start + 24 : start + 28] = (2**32 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"claim more bytes than the file holds|corrupt"):
        load_trace(path)


def test_terminal_escapes_in_a_trace_are_printed_as_text(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = tiny_trace()
    trace["model"]["name"] = "tiny\x1b[2J\u202e"
    trace["status"] = "error: \x07boom"
    trace["complete"] = False
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    for args in (
        ("trace", "info", str(path)),
        ("report", "retriggers", str(path)),
        ("replay", str(path), "--hw", "l40s", "--quiet"),
    ):
        result = run_cli(*args)
        assert result.code == 0, (args, result.err)
        assert "\x1b" not in result.out + result.err and "\u202e" not in result.out + result.err, args
        assert "tiny\\x1b[2J\\u202e" in result.out, (args, result.out)


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _leaves(v, (*path, k))] or [path]
    return [path]


def _hostile_values() -> list[Any]:
    return [
        None,
        "x",
        "\x1b[2J",
        True,
        -1,
        0,
        2**40,
        10**30,
        float("nan"),
        float("inf"),
        -0.5,
        [],
        {},
        {"a": {"b": {}}},
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int32),
        torch.full((3,), -7, dtype=torch.int32),
        torch.full((2, 2), float("nan"), dtype=torch.float64),
        torch.ones(1, dtype=torch.int32).expand(10**8),
        torch.ones(7, dtype=torch.uint8),
    ]


def test_random_mutations_load_cleanly_or_fail_with_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Fuzz: 300 seeded single-field mutations of a valid trace. Each either loads (and then
    `trace info` and `replay` run to the end) or is refused with a UserError; nothing else."""
    import random

    rng = random.Random(0)
    base = tiny_trace()
    paths = _leaves(base)
    values = _hostile_values()
    path = tmp_path / "t.pt"
    accepted = 0
    for _ in range(300):
        trace = tiny_trace()
        where = rng.choice(paths)
        parent = trace
        for key in where[:-1]:
            parent = parent[key]
        if rng.random() < 0.2:
            parent.pop(where[-1])
        else:
            parent[where[-1]] = rng.choice(values)
        torch.save(trace, path)
        try:
            load_trace(path)
        except UserError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), (where, str(exc))
            continue
        accepted += 1
        for args in (("trace", "info", str(path)), ("replay", str(path), "--hw", "l40s", "--quiet")):
            result = run_cli(*args)
            assert result.code in (0, 2), (where, args, result.err)
            assert result.err.count("\n") <= 2, (where, args, result.err)
    assert accepted > 0, "no mutation was accepted: the fuzz no longer exercises the commands"
