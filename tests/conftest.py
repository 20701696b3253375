"""Shared fixtures: model specs and a CLI runner that captures output and exit status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from dartsim.cli import main
from dartsim.specs.model import ModelSpec, load_model_spec

if TYPE_CHECKING:
    from dartsim.record.model import LoadedModel


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `dartsim ARGS...` in-process; argparse exits become exit codes."""

    def runner(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code) if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return runner


@pytest.fixture(scope="session")
def llama8b() -> ModelSpec:
    return load_model_spec("llama-3.1-8b")


@pytest.fixture(scope="session")
def llama70b() -> ModelSpec:
    return load_model_spec("llama-3.1-70b")


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The bundled SmolLM2-135M-Instruct on the CPU (loaded once per session)."""
    from dartsim.record.model import load_for_recording

    return load_for_recording(None, "cpu", 0)
