"""What the README promises: its commands exist, run, and CI runs its test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_readme_gives_exactly_two_fresh_machine_commands() -> None:
    section = README.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert len(commands) == 2
    main_job, tests = commands
    assert "setup.sh" in main_job and "dartsim table7" in main_job
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci, "CI must run the README's test command"


EXAMPLES = [
    line.strip() for block in BLOCKS for line in block.splitlines() if line.strip().startswith("dartsim ")
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder that sees the repository's traces and model configs, where the
    examples run in README order (a later one may read what an earlier one wrote)."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("traces", "models_cfg", "studies", "examples"):
        (folder / name).symlink_to(REPO / name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("line", EXAMPLES)
def test_every_readme_example_runs(run_cli, line: str, workdir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(workdir)
    args = shlex.split(line)[1:]
    result = run_cli(*args)
    assert result.code == 0, result.err
    assert result.out or "--out" in args
    assert "before its first mask" not in result.err, "a README example records no sparsity"


def test_there_are_examples_to_run() -> None:
    assert len(EXAMPLES) >= 3
