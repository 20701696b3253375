"""Output destinations: checked before the work starts, written atomically through links,
with the umask respected and temporaries of killed writers cleaned up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


def test_a_folder_given_where_a_file_is_expected_is_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("table7", "--out", str(tmp_path))
    assert result.code == 2 and "is a folder" in result.err and result.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [] and not list(tmp_path.parent.glob(f".{tmp_path.name}*"))


def test_a_file_where_a_folder_should_be_is_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = run_cli("table7", "--out", str(blocker / "t7.md"))
    assert result.code == 2 and "does not exist" in result.err and result.err.count("\n") == 1
    sim = run_cli(
        "simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--gen-len", "4", "--out", str(blocker)
    )
    assert sim.code == 2 and "exists and is not a folder" in sim.err and sim.err.count("\n") == 1
    assert blocker.read_text() == "x"


def test_record_checks_its_destination_before_loading_a_model(run_cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dartsim.record import model as hf

    def no_model(*_args: object, **_kw: object) -> None:
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(hf, "load_for_recording", no_model)
    result = run_cli("record", "--out", str(tmp_path / "missing" / "t.pt"))
    assert result.code == 2 and "does not exist" in result.err
    folder = run_cli("record", "--out", str(tmp_path))
    assert folder.code == 2 and "is a folder" in folder.err


def test_a_symlinked_destination_is_written_through_not_replaced(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "real.md"
    real.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    assert run_cli("table7", "--out", str(link)).code == 0
    assert link.is_symlink() and "Table 7" in real.read_text()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_respect_the_umask(run_cli, tmp_path: Path, umask: int, mode: int) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(umask)
    try:
        assert run_cli("table7", "--out", str(tmp_path / "t.md")).code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "t.md").stat().st_mode & 0o777 == mode


def test_a_killed_writers_old_temporary_is_removed_and_a_fresh_one_kept(tmp_path: Path) -> None:
    from dartsim.fileio import atomic_write_text

    stale = tmp_path / ".t.md.k2j3h4.tmp"
    stale.write_text("left by SIGKILL")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".t.md.abcdef.tmp"
    fresh.write_text("another writer, now")
    other = tmp_path / ".other.md.k2j3h4.tmp"
    other.write_text("not ours")
    os.utime(other, (old, old))
    atomic_write_text(tmp_path / "t.md", "content")
    assert not stale.exists() and fresh.exists() and other.exists()
    assert (tmp_path / "t.md").read_text() == "content"


def test_a_multi_file_output_that_fails_keeps_the_old_set_whole(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A destination that cannot be written used to be found after the files before it were
    replaced: the folder then held two runs. Now nothing is replaced."""
    repo = Path(__file__).resolve().parents[1]
    trace = str(repo / "traces" / "two-topic-70.pt")
    out = tmp_path / "out"
    first = run_cli("replay", trace, "--hw", "l40s", "--out", str(out), "--quiet")
    assert first.code == 0, first.err
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (out / "layers.csv").unlink()
    (out / "layers.csv").mkdir()  # this destination cannot be written
    again = run_cli("replay", trace, "--hw", "h100-sxm", "--out", str(out), "--quiet")
    assert again.code == 2 and "is a folder" in again.err and len(again.err.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k != "layers.csv"}
    assert not [p for p in out.iterdir() if p.name.startswith(".dartsim-staging")]
