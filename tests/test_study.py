"""Declarative studies: validation of the file, resume, parallel workers, hardware changes,
and the shipped studies' reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dartsim.errors import UserError
from dartsim.study import runner
from dartsim.study.spec import load_study, point_key

REPO = Path(__file__).resolve().parents[1]
SMALL = """
name: small
workload:
  traces: [{trace}]
models: [llama-3.1-8b]
hardware:
  - l40s
  - {{preset: l40s, label: l40s-bw-x2, scale: {{memory.peak_bandwidth_gb_per_s: 2}}}}
  - {{preset: h100-sxm, label: h100-noc-ring, set: {{noc.topology: ring}}}}
tp: [1]
"""


def _study(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text or SMALL.format(trace=REPO / "traces" / "two-topic-70.pt"))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s + "colour: blue\n", "unknown key(s) ['colour']"),
        (lambda s: s + "batch: [1, 2]\n", "'batch' applies to synthetic workloads only"),
        (lambda s: s + "prompt_len: [128]\n", "'prompt_len' applies to synthetic workloads only"),
        (lambda s: s.replace("label: l40s-bw-x2, ", ""), "needs a 'label'"),
        (lambda s: s.replace("tp: [1]", "tp: []"), "'tp' must be a non-empty list"),
        (lambda s: s.replace("tp: [1]", "tp: [" + ", ".join(["1"] * 4000) + "]"), "more than 10000"),
        (
            lambda s: s.replace("scale: {memory.peak_bandwidth_gb_per_s: 2}", "scale: {x: -1}"),
            "must be positive",
        ),
    ],
    ids=[
        "unknown key",
        "batch with traces",
        "prompt length with traces",
        "unlabelled change",
        "empty axis",
        "too many points",
        "bad scale",
    ],
)
def test_a_bad_study_file_is_one_line(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _study(tmp_path, change(SMALL.format(trace=REPO / "traces" / "two-topic-70.pt")))
    with pytest.raises(UserError) as err:
        load_study(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_hardware_changes_scale_set_and_are_noted() -> None:
    base = runner.hardware_of({"preset": "l40s", "label": "l40s", "set": {}, "scale": {}})
    doubled = runner.hardware_of(
        {"preset": "l40s", "label": "x2", "set": {}, "scale": {"memory.peak_bandwidth_gb_per_s": 2}}
    )
    assert doubled.memory.peak_bandwidth_bytes_per_s == 2 * base.memory.peak_bandwidth_bytes_per_s
    assert "study x2" in doubled.sources["memory.peak_bandwidth_gb_per_s"]
    ring = runner.hardware_of(
        {"preset": "../examples/hw/mesh-npu.yaml".replace("..", str(REPO)), "label": "ring",
         "set": {"noc.topology": "ring", "noc.mesh_rows": None, "noc.mesh_cols": None}, "scale": {}}
    )  # fmt: skip
    assert ring.noc.topology == "ring"
    off = runner.hardware_of(
        {"preset": "l40s", "label": "off", "set": {"on_chip.weight_prefetch": True}, "scale": {}}
    )
    assert off.on_chip.weight_prefetch is True


def test_a_study_resumes_where_it_stopped_and_parallel_equals_serial(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dartsim.report.study_report import results_csv

    study = load_study(_study(tmp_path))
    serial = runner.run_study(study, tmp_path / "serial", jobs=1)
    assert [("row" in r, "skipped" in r) for r in serial] == [(True, False), (True, False), (True, False)]
    assert serial[1]["row"]["dense_tpot_s"] < serial[0]["row"]["dense_tpot_s"]  # twice the bandwidth
    parallel = runner.run_study(study, tmp_path / "parallel", jobs=2)
    assert results_csv(parallel) == results_csv(serial)
    # an interrupted run: the second point dies, the first is kept, a re-run does only the rest
    out = tmp_path / "cut"
    calls: list[str] = []
    real = runner.run_point

    died: list[bool] = []

    def dies_on_second(point):  # type: ignore[no-untyped-def]
        calls.append(point_key(point))
        if len(calls) == 2 and not died:
            died.append(True)
            raise RuntimeError("killed mid-study")
        return real(point)

    monkeypatch.setattr(runner, "run_point", dies_on_second)
    with pytest.raises(RuntimeError, match="killed mid-study"):
        runner.run_study(study, out, jobs=1)
    assert len(list((out / "points").glob("*.json"))) == 1
    calls.clear()
    resumed = runner.run_study(study, out, jobs=1)
    assert len(calls) == 2 and results_csv(resumed) == results_csv(serial)
    calls.clear()
    runner.run_study(study, out, jobs=1)
    assert calls == [], "a finished study runs nothing again"


def test_sweep_with_a_study_file_writes_the_results_folder(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = run_cli("study", str(_study(tmp_path)), "--out", str(out), "--quiet", "--jobs", "1")
    assert result.code == 0, result.err
    assert {"results.csv", "study.md", "speedup.png", "points"} <= {p.name for p in out.iterdir()}
    assert "| l40s-bw-x2 |" in (out / "study.md").read_text()


SHIPPED = sorted(p for p in (REPO / "studies").glob("*.yaml") if not p.stem.startswith("serving-"))
"""Replay studies (serving studies keep their points: tests/test_study_serving.py)."""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_study_reports_are_current(run_cli, tmp_path: Path, path: Path) -> None:  # type: ignore[no-untyped-def]
    """reports/study-NAME/: dartsim study studies/NAME.yaml --out reports/study-NAME"""
    out = tmp_path / path.stem
    assert run_cli("study", str(path), "--out", str(out), "--quiet").code == 0
    shipped = REPO / "reports" / f"study-{path.stem}"
    for name in ("study.md", "results.csv"):
        assert (out / name).read_text() == (shipped / name).read_text(), f"{shipped / name} is stale"


def test_a_study_on_a_dask_cluster_gives_the_local_results(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from dartsim.report.study_report import results_csv

    study = load_study(_study(tmp_path))
    serial = runner.run_study(study, tmp_path / "serial", jobs=1)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = runner.run_study(study, tmp_path / "dask", jobs=1, scheduler=cluster.scheduler_address)
    assert results_csv(on_dask) == results_csv(serial)
    assert len(list((tmp_path / "dask" / "points").glob("*.json"))) == len(study["points"])


def test_synthetic_axes_expand_and_reach_the_workload(tmp_path: Path) -> None:
    text = """
name: synth
workload:
  synthetic: {prompt_len: 64, gen_len: 160, retriggers: 0}
models: [smollm2-135m]
hardware: [l40s]
tp: [1]
batch: [1, 2]
prompt_len: [64, 512]
"""
    study = load_study(_study(tmp_path, text))
    assert len(study["points"]) == 4
    results = runner.run_study(study, tmp_path / "out", jobs=1)
    ttft = {(r["point"]["batch"], r["point"]["prompt_len"]): r["row"]["ttft_s"] for r in results}
    assert ttft[(1, 512)] > ttft[(1, 64)] and ttft[(2, 64)] > ttft[(1, 64)]


def test_bad_traces_fail_before_any_point_and_a_changed_file_is_not_reused(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    trace = tmp_path / "t.pt"
    text = SMALL.format(trace=trace)
    missing = run_cli("study", str(_study(tmp_path, text)), "--out", str(tmp_path / "o"), "--quiet")
    assert missing.code == 2 and "no such file" in missing.err and not (tmp_path / "o").exists()
    trace.write_bytes(b"not a trace")
    corrupt = run_cli("study", str(_study(tmp_path, text)), "--out", str(tmp_path / "o"), "--quiet")
    assert corrupt.code == 2 and "corrupt trace" in corrupt.err and not (tmp_path / "o").exists()
    shutil.copy(REPO / "traces" / "two-topic-70.pt", trace)
    before = {point_key(p) for p in load_study(_study(tmp_path, text))["points"]}
    shutil.copy(REPO / "traces" / "two-topic-50.pt", trace)
    after = {point_key(p) for p in load_study(_study(tmp_path, text))["points"]}
    assert before.isdisjoint(after), "points of a changed trace must not reuse saved results"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.replace("models: [llama-3.1-8b]", "models: [llama-3.1-8bb]"),
            "models entry 'llama-3.1-8bb'",
        ),
        (lambda s: s.replace("noc.topology: ring", "noc.topolgy: ring"), "hardware 'h100-noc-ring'"),
        (lambda s: s + "precision: [{weight: fp7}]\n", "precision weight"),
        (lambda s: s.replace("tp: [1]", "tp: [0]"), "'tp' values must be positive integers"),
    ],
    ids=["model typo", "unknown hardware field", "unknown format", "tp zero"],
)
def test_a_user_error_in_a_study_ends_it_before_any_point_with_exit_2(  # type: ignore[no-untyped-def]
    run_cli, tmp_path: Path, change, message: str
) -> None:
    """Each of these used to become a 'skipped' point and a study that succeeded."""
    path = _study(tmp_path, change(SMALL.format(trace=REPO / "traces" / "two-topic-70.pt")))
    out = tmp_path / "out"
    r = run_cli("study", str(path), "--out", str(out), "--quiet", "--jobs", "1")
    assert r.code == 2, r.out + r.err
    assert message in r.err and len(r.err.strip().splitlines()) == 1
    assert not (out / "points").exists() or not any((out / "points").iterdir())


def test_a_model_config_is_read_beside_the_study_and_its_edits_change_the_key(tmp_path: Path) -> None:
    """Model paths resolve against the study file, not the working directory, and a changed
    config.json gives new point keys (a resumed study would otherwise reuse stale points)."""
    import json
    import os

    folder = tmp_path / "study"
    folder.mkdir()
    config = json.loads((REPO / "models_cfg" / "llama-3.1-8b.json").read_text())
    (folder / "mine.json").write_text(json.dumps(config))
    text = SMALL.format(trace=REPO / "traces" / "two-topic-70.pt").replace("[llama-3.1-8b]", "[mine.json]")
    path = folder / "s.yaml"
    path.write_text(text)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)  # not the study's folder
        before = [point_key(p) for p in load_study(path)["points"]]
    finally:
        os.chdir(cwd)
    config["intermediate_size"] = 14000
    (folder / "mine.json").write_text(json.dumps(config))
    after = [point_key(p) for p in load_study(path)["points"]]
    assert before and not set(before) & set(after)


SLOW = """
name: slow
workload:
  synthetic: {prompt_len: 512, gen_len: 2000, retriggers: 4}
models: [llama-3.1-70b]
hardware: [l40s, h100-sxm, h200, a100-sxm-80gb]
tp: [1, 2, 4, 8]
batch: [1, 2]
"""


def _workers() -> set[int]:
    """Pids of multiprocessing's forkserver and its workers on this machine."""
    import subprocess

    ps = subprocess.run(["ps", "-eo", "pid,cmd"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines()[1:] if "multiprocessing" in line}


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_parallel_study_stops_at_once_keeps_its_points_and_leaves_no_worker(
    tmp_path: Path, signame: str, code: int
) -> None:
    """It used to run every queued point before stopping (and SIGTERM orphaned the workers)."""
    import signal
    import subprocess
    import sys
    import time

    path = _study(tmp_path, SLOW)
    out = tmp_path / "out"
    before = _workers()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dartsim", "study", str(path), "--out", str(out), "--quiet", "--jobs", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    while not any((out / "points").glob("*.json")) and time.monotonic() - start < 120:
        time.sleep(0.1)
    saved = len(list((out / "points").glob("*.json")))
    assert 0 < saved < 32, "the study ran no point, or all of them, before the signal"
    proc.send_signal(getattr(signal, signame))
    sent = time.monotonic()
    assert proc.wait(timeout=60) == code
    assert time.monotonic() - sent < 15, "the study ran on after the signal"
    err = proc.stderr.read() if proc.stderr else ""
    assert "finished points are kept" in err and "Traceback" not in err
    kept = list((out / "points").glob("*.json"))
    assert len(kept) >= saved and all(p.read_text().endswith("}\n") for p in kept)
    time.sleep(0.5)
    assert not (_workers() - before), "a worker outlived the study"


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2, 3]",
        b"\xff\xfe not utf-8",
        b'{"key": "other", "point": {}, "row": {}}',
        b'"just a string"',
        b"{",
    ],
    ids=["a list", "not UTF-8", "another key", "a string", "half-written"],
)
def test_a_saved_point_that_is_not_one_is_run_again(tmp_path: Path, content: bytes) -> None:
    """These used to end the study with a traceback (or be trusted)."""
    study = load_study(_study(tmp_path))
    out = tmp_path / "out"
    first = runner.run_study(study, out, jobs=1)
    victim = out / "points" / f"{point_key(study['points'][0])}.json"
    victim.write_bytes(content)
    again = runner.run_study(study, out, jobs=1)
    assert again[0]["row"] == first[0]["row"]
    assert json.loads(victim.read_text())["key"] == point_key(study["points"][0])


def test_a_points_path_that_is_a_file_is_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "points").write_text("not a folder")
    r = run_cli("study", str(_study(tmp_path)), "--out", str(out), "--quiet", "--jobs", "1")
    assert r.code == 2 and "points" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_symbolic_link_loop_among_study_inputs_is_one_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
    path = _study(tmp_path, SMALL.format(trace=tmp_path / "a.pt"))
    r = run_cli("study", str(path), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "1")
    assert r.code == 2 and "a.pt" in r.err and len(r.err.strip().splitlines()) == 1


def _yaml_values():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
        st.sampled_from(["l40s", "h100-sxm", "llama-3.1-8b", "auto", "capacity", "fp8", "", "x" * 300]),
    )  # fmt: skip
    names = st.sampled_from(["traces", "synthetic", "serving", "preset", "label", "set", "scale",
                             "prompt_len", "requests", "slo", "ttft_s", "weight", "junk"])  # fmt: skip
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
        max_leaves=12,
    )


def test_random_study_files_load_or_fail_in_one_line(tmp_path: Path) -> None:
    """Whatever a study file holds, loading it gives a study or one UserError line, quickly."""
    import time

    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dartsim.study.spec import TOP_KEYS

    keys = st.sampled_from([*sorted(TOP_KEYS), "colour"])

    base = st.fixed_dictionaries(
        {
            "name": st.one_of(st.just("fuzz"), _yaml_values()),
            "workload": st.one_of(st.just({"synthetic": {"gen_len": 32}}), _yaml_values()),
            "models": st.one_of(st.just(["llama-3.1-8b"]), _yaml_values()),
            "hardware": st.one_of(st.just(["l40s"]), _yaml_values()),
        }
    )
    docs = st.tuples(base, st.dictionaries(keys, _yaml_values(), max_size=5)).map(lambda p: {**p[0], **p[1]})

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(docs)
    def check(doc: dict) -> None:  # type: ignore[type-arg]
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(doc))
        start = time.monotonic()
        try:
            study = load_study(path)
        except UserError as exc:
            assert "\n" not in str(exc)
        else:
            assert study["points"]
        assert time.monotonic() - start < 10

    check()


def test_a_label_with_a_pipe_keeps_the_study_table_whole(tmp_path: Path) -> None:
    """A hardware label such as `h100|x2` used to split its row into an extra column."""
    from dartsim.report.study_report import study_markdown

    text = SMALL.format(trace=REPO / "traces" / "two-topic-70.pt").replace(
        "label: l40s-bw-x2", "label: 'l40s|x2'"
    )
    study = load_study(_study(tmp_path, text))
    results = runner.run_study(study, tmp_path / "out", jobs=1)
    table = [line for line in study_markdown(study, results).splitlines() if line.startswith("| ")]
    cells = {len(line.replace("\\|", "").split("|")) for line in table}
    assert len(cells) == 1, table  # every row has the header's number of cells
    assert any("l40s\\|x2" in line for line in table)
