"""`dartsim calibrate` and `dartsim validate`: measured hardware files, and predictions
checked against measurements (on this machine, and against published GPU figures)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dartsim.commands.common import emit, positive_int
from dartsim.units import GB


def _progress(quiet: bool):
    if quiet:
        return None
    return lambda message: sys.stderr.write(f"  {message}\n")


def run_calibrate(args: argparse.Namespace) -> int:
    import yaml

    from dartsim.errors import UserError
    from dartsim.fileio import atomic_write_text, check_writable

    check_writable(args.out)
    if args.device == "cpu":
        from dartsim.calibrate import cpu

        sys.stderr.write("calibrating this host's CPU (eager PyTorch, fp32)\n")
        host = cpu.measure(quick=args.quick, progress=_progress(args.quiet))
        doc, fit = cpu.preset(host, args.name or "cpu-host")
        stack = cpu.stack_document(host, f"{args.name or 'cpu-host'}-stack")
    else:
        from dartsim.calibrate import cuda

        if not cuda.available():
            raise UserError("--device cuda: no CUDA device is available on this machine")
        if args.base is None:
            raise UserError("--device cuda needs --base PRESET|FILE: the datasheet figures to start from")
        from dartsim.specs.hardware import load_hardware_spec

        base = load_hardware_spec(args.base)
        sys.stderr.write(f"calibrating {cuda.device_name()} from {base.name}\n")
        gpu = cuda.measure(quick=args.quick, progress=_progress(args.quiet))
        doc, fit = cuda.preset(base, gpu, args.name)
        stack = cuda.stack_document(gpu, f"{doc['name']}-stack")
    out = Path(args.out)
    stack_path = out.with_name(out.stem + STACK_SUFFIX)
    doc["default_stack"] = stack_path.name  # resolved beside the hardware file
    head = "# written by dartsim calibrate; every measured field says how it was measured\n"
    atomic_write_text(
        stack_path, head + yaml.safe_dump(stack, sort_keys=False, width=100, allow_unicode=True)
    )
    atomic_write_text(out, head + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True))
    sys.stderr.write(
        f"GEMM fit: rms log error {fit.rms_log_error:.3f}\nwrote {out} (hardware) and {stack_path} "
        "(software stack: the launch costs)\n"
    )
    return 0


STACK_SUFFIX = ".stack.yaml"
"""`calibrate --out host.yaml` writes the measured stack beside it as host.stack.yaml."""


def _published(args: argparse.Namespace) -> int:
    from dartsim.report.validation import render_published
    from dartsim.validate import published, published_fit

    data = published.load_measurements(args.data)
    hw_dir, stack_dir = args.hw_dir, args.stack_dir
    if args.fit:
        _fit_folder(args.fit)  # before the fit's minute of work, not after it
        result = published_fit.fit_all(data, hw_dir, stack_dir)
        _write_fits(result, args.fit)
        hw_dir, stack_dir = args.fit, str(Path(args.fit) / "stacks")
    rows = published.evaluate(data, hw_dir, stack_dir)
    emit(render_published(rows, data.about, data.split, data.sources, args.format), args.out)
    return 0


def _fit_folder(folder: str) -> Path:
    """DIR and DIR/stacks, created (a one-line error where they cannot be)."""
    from dartsim.errors import UserError

    out = Path(folder)
    try:
        (out / "stacks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the folder: {exc.strerror or exc}") from None
    return out


def _write_fits(result: Any, folder: str) -> None:
    """Fitted hardware files into DIR, stack files into DIR/stacks, and DIR/fit.md."""
    import yaml

    from dartsim.fileio import write_file_set
    from dartsim.report.validation import render_fit
    from dartsim.specs.hardware_yaml import hardware_to_yaml_dict
    from dartsim.specs.stack import stack_to_yaml_dict

    out = _fit_folder(folder)
    files: dict[str, str] = {}
    for fit in result.fits:
        values = ", ".join(f"{k} = {v:g}" for k, v in fit.fields.items())
        state = "ok" if fit.ok else "FAILED (at the edge: " + ", ".join(fit.at_edge) + "), not shipped"
        sys.stderr.write(f"{fit.stack} on {fit.device}: {values}; {state}\n")
    for name, hw in sorted(result.hardware.items()):
        text = yaml.safe_dump(hardware_to_yaml_dict(hw), sort_keys=False, width=10000, allow_unicode=True)
        files[f"{name}.yaml"] = text
    for name, stack in sorted(result.stacks.items()):
        text = yaml.safe_dump(stack_to_yaml_dict(stack), sort_keys=False, width=10000, allow_unicode=True)
        files[f"stacks/{name}.yaml"] = text
    files["fit.md"] = render_fit(result)
    write_file_set(out, files)
    sys.stderr.write(
        f"wrote fitted hardware files into {out}, stack files into {out / 'stacks'}, {out / 'fit.md'}\n"
    )


def _serving(args: argparse.Namespace) -> int:
    from dartsim.report.validation_serving import render_serving
    from dartsim.validate import serving

    mapping = serving.load_mapping(args.data)
    compared, skipped = serving.evaluate(mapping, args.only, _progress(args.quiet), args.jobs)
    text = render_serving(compared, skipped, mapping.doc["about"], mapping.split, mapping.doc, args.format)
    emit(text, args.out)
    return 0


def _energy(args: argparse.Namespace) -> int:
    from dartsim.report.validation_energy import render_energy
    from dartsim.validate import energy

    doc, rows = energy.load(args.data)
    result = energy.evaluate(doc, rows, args.fit_static, _progress(args.quiet))
    emit(render_energy(result, doc, args.format), args.out)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from dartsim.errors import UserError
    from dartsim.fileio import check_writable

    if sum(bool(x) for x in (args.published, args.serving, args.energy)) > 1:
        raise UserError("--published, --serving and --energy are separate validations: give one")
    if args.fit_static and not args.energy:
        raise UserError("--fit-static applies to --energy")
    if args.out:
        check_writable(args.out)
    if args.published:
        return _published(args)
    if args.serving:
        return _serving(args)
    if args.energy:
        return _energy(args)
    if args.hw is None:
        raise UserError("validate needs --hw NAME|FILE (a hardware file of this host), or --published")
    from dartsim.report.validation import host_rows, render_host
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.validate import host

    hw = load_hardware_spec(args.hw)
    selected = host.cases(quick=args.quick)
    if args.only:
        selected = [c for c in selected if args.only in c.name]
        if not selected:
            raise UserError(f"--only {args.only!r} matches no case")
    from dartsim.calibrate.cpu import copy_bandwidth

    sys.stderr.write(f"timing {len(selected)} cases on this host against {hw.name}\n")
    before = copy_bandwidth(quick=args.quick)
    results = host.run_cases(selected, hw, args.repeats, _progress(args.quiet))
    after = copy_bandwidth(quick=args.quick)
    preamble = (
        f"Hardware file: `{hw.name}` ({hw.description}). Measured: real PyTorch execution on this "
        f"machine, median of {args.repeats} runs after a warm-up. Predicted: dartsim's device model "
        f"for the same work at fp32.\n\n{host.DESCRIPTION}\n\nThe host's copy bandwidth was "
        f"{before / GB:.1f} GB/s before the cases and {after / GB:.1f} GB/s after them; the hardware "
        f"file was calibrated at {hw.memory.peak_bandwidth_bytes_per_s / GB:.1f} GB/s. A shared machine's "
        "bandwidth drifts: compare these before reading the errors."
    )
    emit(render_host(host_rows(results), hw.name, preamble, args.format), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="measure this machine (cpu) or a GPU (cuda) and write a hardware file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Runs microbenchmarks (streaming bandwidth, GEMMs across decode- and prefill-shaped\n"
            "sizes, vector operations, per-kernel dispatch) and writes a hardware file whose\n"
            "every measured field says what was measured, on what and how, and beside it the\n"
            "software stack it measured (FILE.stack.yaml: the launch costs), which the hardware\n"
            "file names as its default_stack. The GEMM efficiency\n"
            "fields are fitted to the measured GEMMs with the engine's own efficiency rule.\n"
            "--device cpu builds the file from scratch; --device cuda starts from --base (the\n"
            "datasheet figures) and replaces what it measures. About a minute (--quick: seconds)."
        ),
        epilog=(
            "examples:\n"
            "  dartsim calibrate --device cpu --out my-host.yaml\n"
            "  dartsim validate --hw my-host.yaml --out validation.md\n"
            "  dartsim calibrate --device cuda --base h100-sxm --out my-h100.yaml"
        ),
    )
    cal.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="what to measure (default cpu)")
    cal.add_argument("--base", metavar="PRESET|FILE", help="cuda: the hardware file to start from")
    cal.add_argument(
        "--name", help="the name inside the written file (default cpu-host, or BASE-measured for cuda)"
    )
    cal.add_argument("--out", required=True, metavar="FILE.yaml", help="where to write the hardware file")
    cal.add_argument("--quick", action="store_true", help="fewer shapes and repeats (seconds; for tests)")
    cal.add_argument("--quiet", action="store_true", help="no progress lines")
    cal.set_defaults(handler=run_calibrate)

    val = sub.add_parser(
        "validate",
        help="predicted vs measured: on this CPU, or against published GPU measurements",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "On this machine: runs real PyTorch work (the bundled SmolLM2 prefill and decode;\n"
            "single decoder layers at Llama-3.1-8B and 70B widths, dense and FFN-compact) and\n"
            "times it beside dartsim's prediction on --hw, ending with the worst |error|.\n"
            "With --published: every published GPU measurement shipped with dartsim, simulated\n"
            "on its device's preset, reported as calibration and held-out parts separately.\n"
            "With --serving: every published serving measurement shipped with dartsim (TTFT, TPOT\n"
            "and throughput under a request rate or a number of users) run through `dartsim serve`\n"
            "on its device, stack and scheduler, by part of the split; rows it cannot simulate are\n"
            "listed with the reason. About 20 minutes in full; --only SOURCE runs one source.\n"
            "With --energy: the measured energy rows (joules per token, average power) served\n"
            "through dartsim serve on presets with an energy section; --fit-static fits the\n"
            "static power on the calibration part and reports the held-out part with it."
        ),
        epilog=(
            "examples:\n"
            "  dartsim calibrate --device cpu --out host.yaml && dartsim validate --hw host.yaml\n"
            "  dartsim validate --hw cpu-host --only smollm2 --repeats 3\n"
            "  dartsim validate --published --out reports/validation-gpu.md\n"
            "  dartsim validate --serving --only lmdeploy --format json\n"
            "  dartsim validate --energy --fit-static --out reports/validation-energy.md"
        ),
    )
    val.add_argument("--hw", metavar="NAME|FILE", help="this host's hardware file (e.g. from calibrate)")
    val.add_argument("--published", action="store_true", help="check the published GPU measurements instead")
    val.add_argument(
        "--serving", action="store_true", help="check the published serving measurements with dartsim serve"
    )
    val.add_argument(
        "--energy",
        action="store_true",
        help="check measured joules and watts (energy sections of the presets)",
    )
    val.add_argument(
        "--fit-static",
        action="store_true",
        help="--energy: fit energy.static_w on the calibration rows' average power (refused outside its "
        "band)",
    )
    val.add_argument(
        "--data",
        metavar="FILE",
        help="--published: another measurements file; --serving, --energy: another mapping file (its rows: "
        "path is read beside it)",
    )
    val.add_argument(
        "--hw-dir", metavar="DIR", help="--published: take the device files from DIR instead of the presets"
    )
    val.add_argument(
        "--stack-dir", metavar="DIR", help="--published: take the stack files from DIR instead of the presets"
    )
    val.add_argument(
        "--fit",
        metavar="DIR",
        help="--published: fit the calibrated hardware and stack fields on the calibration rows (each "
        "device with its reference stack, then the other stacks), write the fitted hardware files into DIR, "
        "the stack files into DIR/stacks and what each fit gave into DIR/fit.md, and report with them",
    )
    val.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="--serving: processes that simulate side by side (default 1; the report does not depend on it)",
    )
    val.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    val.add_argument(
        "--only",
        metavar="TEXT",
        help="only the cases whose name contains TEXT (--serving: the sources whose id contains it)",
    )
    val.add_argument("--quick", action="store_true", help="a few small cases (for tests)")
    val.add_argument(
        "--format", choices=("md", "csv", "json"), default="md", help="output format (default md)"
    )
    val.add_argument("--out", metavar="FILE", help="write atomically to FILE")
    val.add_argument("--quiet", action="store_true", help="no progress lines")
    val.set_defaults(handler=run_validate, output_folders=("fit",))
