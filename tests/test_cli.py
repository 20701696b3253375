"""Every CLI command runs, teaches with --help, and reports user errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dartsim.specs.hardware import hardware_preset_names
from dartsim.specs.model import preset_names

COMMANDS = [["models"], ["hw", "list"], ["hw", "show", "l40s"], ["table7"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_succeeds_with_defaults(run_cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*command)
    assert result.code == 0, result.err
    assert result.out.strip()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["models"],
        ["hw"],
        ["hw", "list"],
        ["hw", "show"],
        ["table7"],
        ["record"],
        ["trace"],
        ["trace", "info"],
        ["trace", "synth"],
        ["replay"],
        ["simulate"],
        ["report"],
        ["report", "figure5"],
        ["report", "retriggers"],
    ],
    ids=" ".join,
)
def test_help_explains_the_command(run_cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*command, "--help")
    assert result.code == 0
    assert "usage: dartsim" in result.out
    assert len(result.out.splitlines()) > 4


def test_models_lists_every_preset_with_shapes(run_cli) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(run_cli("models", "--format", "json").out)
    assert [r["name"] for r in rows] == preset_names()
    llama8b = next(r for r in rows if r["name"] == "llama-3.1-8b")
    assert (llama8b["layers"], llama8b["hidden"], llama8b["ffn"]) == (32, 4096, 14336)
    assert (llama8b["heads"], llama8b["kv_heads"], llama8b["head_dim"]) == (32, 8, 128)
    assert llama8b["attention_params"] + llama8b["mlp_params"] < llama8b["params"]
    text = run_cli("models").out
    assert "llama-3.1-70b" in text and "70.554 B" in text


def test_models_accepts_a_config_path(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = Path(__file__).resolve().parents[1] / "models_cfg" / "mistral-7b.json"
    (tmp_path / "custom.json").write_text(src.read_text())
    result = run_cli("models", str(tmp_path / "custom.json"), "--format", "csv")
    assert result.code == 0
    assert result.out.splitlines()[1].startswith("custom,mistral,32,4096,14336")


def test_hw_list_names_every_preset(run_cli) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(run_cli("hw", "list", "--format", "json").out)
    assert [r["name"] for r in rows] == hardware_preset_names()
    a100 = next(r for r in rows if r["name"] == "a100-sxm-80gb")
    assert a100["fp8_tflop_per_s"] is None


def test_hw_show_prints_figures_with_sources(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("hw", "show", "h100-sxm")
    data = yaml.safe_load(result.out)
    assert data["memory"]["peak_bandwidth_gb_per_s"] == 3350
    assert "Azure" in data["memory"]["efficiency_source"]
    assert json.loads(run_cli("hw", "show", "h100-sxm", "--format", "json").out) == data


def test_hw_show_output_is_a_hardware_file_that_loads_back(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.specs.hardware import load_hardware_spec

    for name in ("h100-sxm", "cpu-host"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(run_cli("hw", "show", name).out)
        again = load_hardware_spec(str(path))
        preset = load_hardware_spec(name)
        assert (again.memory, again.compute, again.link, again.default_stack) == (
            preset.memory,
            preset.compute,
            preset.link,
            preset.default_stack,
        )
        assert again.sources == preset.sources


def test_stack_show_output_is_a_stack_file_that_loads_back(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.specs.stack import load_stack_spec, stack_preset_names

    for name in stack_preset_names():
        path = tmp_path / f"{name}.yaml"
        path.write_text(run_cli("stack", "show", name).out)
        again, preset = load_stack_spec(str(path)), load_stack_spec(name)
        for part in ("launch", "allreduce", "fusion", "attention", "prefill", "memory"):
            assert getattr(again, part) == getattr(preset, part), (name, part)
        assert (again.sources, again.devices, again.calibrated) == (
            preset.sources,
            preset.devices,
            preset.calibrated,
        )


def test_stack_list_names_every_preset_and_its_launch(run_cli) -> None:  # type: ignore[no-untyped-def]
    from dartsim.specs.stack import stack_preset_names

    rows = json.loads(run_cli("stack", "list", "--format", "json").out)
    assert [r["name"] for r in rows] == stack_preset_names()
    by_name = {r["name"]: r for r in rows}
    assert by_name["trtllm-0.9"]["launch"] == "eager" and by_name["vllm"]["launch"] == "graph"
    assert by_name["pytorch-cpu"]["launch"] == "eager, synchronous"


def test_an_unknown_stack_is_one_line_listing_the_presets(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("simulate", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--stack", "tensorflow")
    assert result.code == 2
    assert "unknown software stack 'tensorflow'" in result.err and "vllm" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_hw_show_accepts_a_yaml_path(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.specs.hardware import load_hardware_spec

    src = Path(load_hardware_spec("mi300x").source_file)
    target = tmp_path / "mine.yaml"
    target.write_text(src.read_text())
    assert "mi300x" in run_cli("hw", "show", str(target)).out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["table7", "--models", "gpt-5"], "unknown model 'gpt-5'; valid names:"),
        (["hw", "show", "tpu"], "unknown hardware 'tpu'; valid names:"),
        (["hw", "show", "/nonexistent/hw.yaml"], "no such file"),
        (["models", "/nonexistent/config.json"], "no such model config"),
        (["table7", "--weight-dtype", "fp4"], "unknown dtype 'fp4'; valid names:"),
        (["table7", "--keep", "1.5"], "expected a number in [0, 1]"),
        (["table7", "--step-tokens", "0"], "expected a positive integer"),
        (["table7", "--format", "xml"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(run_cli, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*args)
    assert result.code == 2
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert fragment in result.err
    assert "Traceback" not in result.err


def test_console_script_runs_as_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dartsim", "table7", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 16
    bad = subprocess.run(
        [sys.executable, "-m", "dartsim", "hw", "show", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_trace_synth_writes_a_marked_synthetic_trace(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dartsim.trace import load_trace

    out = tmp_path / "s.pt"
    result = run_cli(
        "trace",
        "synth",
        "--model",
        "llama-3.1-8b",
        "--gen-len",
        "1000",
        "--retriggers",
        "3",
        "--sparsity",
        "0.6",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    assert "SYNTHETIC" in result.err
    trace = load_trace(out)
    assert trace.synthetic and trace.retriggers.step.size == 3
    assert trace.epochs.pruning[0].sum().item() == pytest.approx(0.6 * 32, abs=1e-6)
    info = run_cli("trace", "info", str(out))
    assert "[SYNTHETIC]" in info.out and "re-triggers      3" in info.out
    too_many = run_cli(
        "trace",
        "synth",
        "--model",
        "llama-3.1-8b",
        "--gen-len",
        "300",
        "--retriggers",
        "5",
        "--out",
        str(tmp_path / "x.pt"),
    )
    assert too_many.code == 2 and "do not fit" in too_many.err and not (tmp_path / "x.pt").exists()


SIMULATE_SMALL = ["simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--gen-len", "2", "--quiet"]
NO_TORCH_COMMANDS = [["--help"], ["--version"], ["hw", "list"], ["models"], ["table7"], ["record", "--help"]]


@pytest.mark.parametrize("argv", [*NO_TORCH_COMMANDS, SIMULATE_SMALL, [*SIMULATE_SMALL, "--sparsity", "0.5"]])
def test_commands_that_need_no_weights_do_not_import_torch(argv: list[str]) -> None:
    """Start-up: these commands must not pay for importing torch (benchmarks/startup.py
    prints the time ratio; this checks the cause, which timing on a busy machine cannot)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom dartsim.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "sys.stdout.flush()\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_sweep_names_a_malformed_tp_rather_than_saying_nothing_fits(run_cli) -> None:  # type: ignore[no-untyped-def]
    trace = str(Path(__file__).resolve().parents[1] / "traces" / "two-topic-70.pt")
    result = run_cli("sweep", trace, "--hw", "l40s", "--tp", "0", "--quiet")
    assert result.code == 2 and "--tp must be a positive integer or 'auto', got '0'" in result.err
    assert "fits none" not in result.err


def _leaf_parsers() -> list[tuple[str, object]]:
    import argparse

    from dartsim.cli import build_parser

    leaves = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.append((name, parser))
        for action in subs:
            for child_name, child in action.choices.items():
                walk(child, f"{name} {child_name}".strip())

    walk(build_parser(), "")
    return leaves


@pytest.mark.parametrize(("name", "parser"), _leaf_parsers(), ids=[n for n, _ in _leaf_parsers()])
def test_every_command_has_a_description_an_example_and_help_for_every_option(name: str, parser) -> None:  # type: ignore[no-untyped-def]
    assert parser.description, f"dartsim {name} --help has no description"
    assert "example" in (parser.epilog or ""), f"dartsim {name} --help shows no example"
    bare = [a.dest for a in parser._actions if a.help is None and a.dest != "help"]
    assert not bare, f"dartsim {name}: options without help: {bare}"


def test_a_perfetto_timeline_under_tensor_parallelism_says_it_shows_device_0(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "p.json"
    args = ("simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--gen-len", "4", "--quiet", "--perfetto")
    assert run_cli(*args, str(out), "--tp", "2").code == 0
    names = [
        e["args"]["name"] for e in json.loads(out.read_text())["traceEvents"] if e["name"] == "process_name"
    ]
    assert names and "device 0 of 2" in names[0]
    assert run_cli(*args, str(out)).code == 0
    names = [
        e["args"]["name"] for e in json.loads(out.read_text())["traceEvents"] if e["name"] == "process_name"
    ]
    assert names == ["dartsim device 0"]


def test_a_yaml_integer_of_thousands_of_digits_is_one_short_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shown = run_cli("hw", "show", "l40s", "--format", "yaml").out
    hostile = tmp_path / "hw.yaml"
    hostile.write_text(shown.replace("capacity_gb: 48.0", "capacity_gb: " + "9" * 5000))
    result = run_cli("hw", "show", str(hostile))
    assert result.code == 2 and "an integer with thousands of digits" in result.err and len(result.err) < 200


def test_a_study_file_given_to_sweep_says_to_run_study(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study = tmp_path / "s.yaml"
    study.write_text("name: s\n")
    result = run_cli("sweep", str(study), "--hw", "l40s")
    assert result.code == 2 and f"run it with dartsim study {study} --out DIR" in result.err


def test_every_output_option_is_checked_before_the_work(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A destination in a missing folder (here --plot of report policies, which runs for
    minutes) is refused at once, before anything is computed."""
    missing = tmp_path / "no" / "such" / "p.png"
    result = run_cli("report", "policies", "--plot", str(missing), "--policies", "static", "--quiet")
    assert result.code == 2 and str(missing.parent) in result.err


TRACE_70 = str(Path(__file__).resolve().parents[1] / "traces" / "two-topic-70.pt")


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["replay", TRACE_70, "--hw", ""], "--hw"),
        (["replay", TRACE_70, "--hw", "l40s", "--model", ""], "--model"),
        (["replay", TRACE_70, "--hw", "l40s", "--out", ""], "--out"),
        (["replay", TRACE_70, "--hw", "l40s", "--stack", " "], "--stack"),
        (["report", TRACE_70, "--hw", "l40s", "--models", "", "--out", "x"], "--models"),
        (["simulate", "--model", "", "--hw", "l40s"], "--model"),
    ],
)
def test_an_empty_option_value_is_one_clear_line(run_cli, argv: list[str], name: str) -> None:  # type: ignore[no-untyped-def]
    """Empty values were ignored (the default used instead) or reported as the path '.'."""
    r = run_cli(*argv)
    assert r.code == 2 and f"{name} is empty" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_stray_comma_in_a_list_is_refused(run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("sweep", TRACE_70, "--hw", "l40s,", "--model", "llama-3.1-8b")
    assert r.code == 2 and "an empty item" in r.err
