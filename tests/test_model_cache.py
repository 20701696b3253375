"""The bundled model's cache is tied to what it was made from: a damaged or foreign cache is
rebuilt, never trusted (a zeroed stretch of the weights once gave a trace marked as the real
SmolLM2 with garbage tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dartsim.record import model as m


def _fake_cache(folder: Path, source: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / m.WEIGHTS_FILE).write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    m.write_manifest(folder, source)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(1000))
    return path


def test_a_fresh_cache_is_trusted(tmp_path: Path, source: Path) -> None:
    _fake_cache(tmp_path / "c", source)
    assert m.cache_problem(tmp_path / "c", source) is None
    assert m.weights_digest(tmp_path / "c") == m.file_sha256(tmp_path / "c" / m.WEIGHTS_FILE)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from([m.WEIGHTS_FILE, "config.json", "tokenizer.json"]),
    fraction=st.floats(0.0, 0.999),
    flip=st.integers(1, 255),
)
def test_one_changed_byte_anywhere_is_caught(tmp_path_factory, name: str, fraction: float, flip: int) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("c")
    src = folder / "src.gguf"
    src.write_bytes(b"GGUF" + bytes(100))
    _fake_cache(folder / "cache", src)
    target = folder / "cache" / name
    data = bytearray(target.read_bytes())
    at = int(fraction * len(data))
    data[at] ^= flip
    target.write_bytes(bytes(data))
    problem = m.cache_problem(folder / "cache", src)
    assert problem is not None and name in problem and "damaged" in problem


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda c, s: (c / m.CACHE_MANIFEST).unlink(), "no manifest"),
        (lambda c, s: (c / m.CACHE_MANIFEST).write_text("{not json"), "unreadable manifest"),
        (lambda c, s: (c / m.CACHE_MANIFEST).write_text('{"format": "x"}'), "another format"),
        (lambda c, s: s.write_bytes(b"GGUF another"), "made from another"),
        (lambda c, s: (c / "config.json").unlink(), "lacks config.json"),
        (lambda c, s: (c / m.WEIGHTS_FILE).write_bytes(b"short"), "of another size"),
    ],
    ids=["no manifest", "unreadable", "other format", "other source", "missing file", "truncated"],
)
def test_every_kind_of_damage_is_named(tmp_path: Path, source: Path, damage, says: str) -> None:  # type: ignore[no-untyped-def]
    _fake_cache(tmp_path / "c", source)
    damage(tmp_path / "c", source)
    problem = m.cache_problem(tmp_path / "c", source)
    assert problem is not None and says in problem


def test_a_damaged_cache_is_rebuilt_and_says_why(tmp_path: Path, source: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(m.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(m, "_bundled_gguf", lambda: source)
    builds: list[Path] = []

    def build(target: Path) -> None:
        builds.append(target)
        _fake_cache(target, source)

    monkeypatch.setattr(m, "_build_bundled_cache", build)
    folder = m._trusted_cache()
    assert builds == [folder]  # none yet: built once
    assert m._trusted_cache() == folder and len(builds) == 1  # intact: used as is
    weights = folder / m.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)  # a zeroed stretch
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert m._trusted_cache() == folder and len(builds) == 2
    err = capsys.readouterr().err
    assert "damaged model.safetensors" in err and "rebuilding" in err
