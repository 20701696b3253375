"""Trace format v1: round trips, bit packing, and refusal of bad files."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tracefactory import tiny_trace

from dartsim.errors import UserError
from dartsim.trace import Trace, load_trace, save_trace
from dartsim.trace.schema import pack_mask, unpack_mask


@pytest.mark.parametrize("width", [1, 7, 8, 9, 1536, 14336])
def test_mask_packing_round_trips(width: int) -> None:
    gen = torch.Generator().manual_seed(width)
    mask = torch.rand(3, width, generator=gen) < 0.3
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.shape == (3, (width + 7) // 8)
    assert torch.equal(unpack_mask(packed, width), mask)


def test_bit_order_is_little_endian_within_a_byte() -> None:
    mask = torch.zeros(10, dtype=torch.bool)
    mask[0] = mask[9] = True
    assert pack_mask(mask).tolist() == [1, 2]


def test_save_then_load_round_trips_with_weights_only(tmp_path: Path) -> None:
    trace = tiny_trace()
    path = tmp_path / "t.pt"
    size = save_trace(trace, path)
    assert size == path.stat().st_size
    raw = torch.load(path, weights_only=True)  # plain tensors only
    assert raw["schema_version"] == 2
    loaded = load_trace(path)
    assert np.array_equal(loaded.epochs.masks, trace["epochs"]["masks"].numpy())
    assert loaded.model.as_dict() == trace["model"]
    again = tmp_path / "again.pt"
    save_trace(loaded, again)  # a typed trace writes back the same content
    assert _same(load_trace(again), loaded)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such trace file"):
        load_trace(tmp_path / "absent.pt")


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    save_trace(tiny_trace(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt trace"):
        load_trace(path)


def test_garbage_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(UserError, match=r"t\.pt: (truncated or corrupt|corrupt)"):
        load_trace(path)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(os.environ["DARTSIM_EXPLOIT_TARGET"]),))


def test_pickled_code_is_refused_and_not_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DARTSIM_EXPLOIT_TARGET", str(marker))
    trace = tiny_trace()
    trace["payload"] = _Exploit()
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save(trace, buffer, pickle_module=pickle)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="refused: the file carries pickled objects"):
        load_trace(path)
    assert not marker.exists()


def test_wrong_schema_version_is_named(tmp_path: Path) -> None:
    trace = tiny_trace()
    trace["schema_version"] = 3
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    with pytest.raises(UserError, match=r"trace schema version 3 is not supported .*reads versions 1, 2"):
        load_trace(path)


def test_v1_traces_load_upgraded_to_the_current_version(tmp_path: Path) -> None:
    """The upgrader gives a v1 trace the v2 policy section (DART's, every head and weight
    kept; `dense` for DART's dense mode); readers see one version only."""
    trace = tiny_trace()
    trace["schema_version"] = 1
    del trace["policy"]
    path = tmp_path / "v1.pt"
    torch.save(trace, path)
    policy = load_trace(path).policy
    assert policy.name == "dart" and policy.weight_format == "dense"
    assert bool(policy.head_masks.all()) and policy.head_masks.shape == (3, 2)
    assert np.array_equal(policy.weight_density, np.ones(3))
    trace["dart"]["mode"] = "dense"
    torch.save(trace, path)
    assert load_trace(path).policy.name == "dense"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Griffin!", "policy.name"),
        ("name", "", "policy.name"),
        ("weight_format", "coo", "policy.weight_format"),
        ("head_masks", torch.zeros(3, 2, dtype=torch.bool), "no attention head"),
        ("weight_density", torch.full((3,), 0.5, dtype=torch.float64), "must be 1 for dense"),
        ("weight_density", torch.ones(2, dtype=torch.float64), "policy.weight_density"),
    ],
)
def test_bad_policy_section_is_named(tmp_path: Path, field: str, value: object, message: str) -> None:
    trace = tiny_trace()
    trace["policy"][field] = value
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    with pytest.raises(UserError, match=message):
        load_trace(path)


def test_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save({"weights": torch.ones(3)}, path)
    with pytest.raises(UserError, match="not a dartsim trace"):
        load_trace(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t["steps"].pop("time_s"), "'steps.time_s' must be a tensor"),
        (
            lambda t: t["steps"].__setitem__("epoch", torch.zeros(3, dtype=torch.int32)),
            "'steps.epoch' has shape",
        ),
        (
            lambda t: t["steps"].__setitem__("tokens", t["steps"]["tokens"].double()),
            "'steps.tokens' must have dtype",
        ),
        (lambda t: t["epochs"]["kept"].__setitem__((0, 0), 0), "'epochs.masks' disagree with epochs.kept"),
        (lambda t: t["model"].__setitem__("num_layers", 0), "'model.num_layers' must be a positive integer"),
        (lambda t: t["steps"]["epoch"].__setitem__(1, 5), "'steps.epoch' must index the 1 epochs"),
        (lambda t: t.pop("complete"), "'complete' must be true or false"),
    ],
)
def test_inconsistent_traces_name_the_field(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    trace = tiny_trace()
    mutate(trace)
    path = tmp_path / "t.pt"
    torch.save(trace, path)
    with pytest.raises(UserError) as err:
        load_trace(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_saving_an_invalid_trace_writes_nothing(tmp_path: Path) -> None:
    trace = tiny_trace()
    trace["schema_version"] = 99
    path = tmp_path / "t.pt"
    with pytest.raises(UserError):
        save_trace(trace, path)
    assert list(tmp_path.iterdir()) == []


def test_trace_info_summarises_and_fails_cleanly(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.pt"
    save_trace(tiny_trace(), path)
    result = run_cli("trace", "info", str(path))
    assert result.code == 0
    assert "mask epochs      1" in result.out and "[SYNTHETIC]" in result.out
    assert "no forward ran" in result.out and "[RANDOM WEIGHTS]" not in result.out  # synthetic: no timings
    import json

    info = json.loads(run_cli("trace", "info", str(path), "--format", "json").out)
    assert info["mask_epochs"] == 1 and info["dense_steps"] == 3 and info["size_bytes"] == path.stat().st_size
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    bad = run_cli("trace", "info", str(tmp_path / "bad.pt"))
    assert bad.code == 2 and bad.err.count("\n") == 1


def test_mask_bits_follow_the_documented_layout() -> None:
    """Neuron i is bit i % 8 of byte i // 8 (little bit order), as the schema states."""
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 9] = True
    mask[0, 0] = True
    assert pack_mask(mask).tolist() == [[1, 2, 0]]


def _same(a: Trace, b: Trace) -> bool:
    """Field-by-field equality of two typed traces (arrays by value)."""
    left, right = a.to_dict(), b.to_dict()

    def equal(x: object, y: object) -> bool:
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            return x.dtype == y.dtype and torch.equal(x, y)
        return x == y

    return equal(left, right)
