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


@pytest.mark.parametrize("line", EXAMPLES)
def test_every_readme_example_runs(run_cli, line: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(REPO)
    args = shlex.split(line)[1:]
    if "--out" in args:
        i = args.index("--out")
        args[i + 1] = str(tmp_path / Path(args[i + 1]).name)
    result = run_cli(*args)
    assert result.code == 0, result.err
    assert result.out or "--out" in args


def test_there_are_examples_to_run() -> None:
    assert len(EXAMPLES) >= 3
