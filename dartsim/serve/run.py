"""A serving run as the command and studies see it: the run and its dense twin, one
payload (the JSON contract), and the search for the highest arrival rate that meets
latency targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dartsim.errors import UserError
from dartsim.serve.result import Slo, summary
from dartsim.serve.sim import ServeJob, ServeRun, simulate
from dartsim.serve.workload import WorkloadSpec


@dataclass(frozen=True)
class ServeOutcome:
    payload: dict[str, Any]
    run: ServeRun
    dense: ServeRun | None


def setup(job: ServeJob, run: ServeRun) -> dict[str, Any]:
    cfg = job.schedule_config()
    cap = run.capacity
    stack = job.software()
    p = job.precision
    return {
        "model": job.model.name,
        "hw": job.hardware.name,
        "stack": stack.label,
        "tp": cap.tp,
        "replicas": job.replicas,
        "router": job.router,
        "precision": {"weight": p.weight.name, "activation": p.activation.name, "kv_cache": p.kv_cache.name},
        "scheduler": {
            "max_num_seqs": cfg.max_num_seqs,
            "max_num_batched_tokens": cfg.max_num_batched_tokens,
            "chunked_prefill": cfg.chunked_prefill,
            "block_size": cfg.block_size,
            "preemption": cfg.preemption,
            "admission": cfg.admission,
        },
        "kv_cache": {
            "blocks_per_replica": cap.kv_blocks,
            "tokens_per_replica": cap.kv_blocks * cap.block_size,
            "bytes_per_token_per_device": cap.kv_bytes_per_token,
        },
        "workload": job.requests.source,
        "masks": len(job.traces) if run.masked else 0,
        "mask_apply": job.mask_apply,
        "seed": job.seed,
    }


def energy_fields(job: ServeJob, run: ServeRun, figures: dict[str, Any]) -> dict[str, Any]:
    """The run's energy on all its devices (engine/energy.py on the iterations' counts, with
    every device's static power for the whole duration, idle or not), per output token, and
    one device's average power; None without an energy section in the hardware file."""
    from dartsim.engine.energy import Counts, energy

    spec = job.hardware.energy
    keys = ("energy_j", "energy_j_low", "energy_j_high", "energy_per_token_j", "energy_per_token_j_low",
            "energy_per_token_j_high", "avg_power_w")  # fmt: skip
    if spec is None or figures["duration_s"] <= 0:
        return dict.fromkeys(keys) | {"board_power_w": None if spec is None else spec.board_power_w}
    it = run.iterations
    devices = run.capacity.tp * job.replicas
    per_device = Counts(
        dram_bytes=int(it["bytes"].sum()),
        flops=int(it["flops"].sum()),
        time_s=figures["duration_s"] * job.replicas,
        link_bytes=int(it["link_bytes"].sum()),
        host_bytes=int(it["host_bytes"].sum()),
    )
    e = energy(spec, per_device, job.precision.gemm_compute.name)
    total = (e.j * run.capacity.tp, e.low_j * run.capacity.tp, e.high_j * run.capacity.tp)
    tokens = figures["output_tokens"]
    return {
        **dict(zip(keys[:3], total, strict=True)),
        **dict(zip(keys[3:6], (t / tokens for t in total), strict=True)),
        "avg_power_w": total[0] / (devices * figures["duration_s"]),
        "board_power_w": spec.board_power_w,
    }


def serve(job: ServeJob, slo: Slo, compare_dense: bool = False) -> ServeOutcome:
    """The run (and with `compare_dense` the same requests served dense) as one payload."""
    run = simulate(job)
    figures = summary(run, slo)
    payload = {**figures, **energy_fields(job, run, figures), "setup": setup(job, run)}
    dense = None
    if compare_dense:
        dense = simulate(job, masked=False)
        twin = summary(dense, slo)
        payload["dense"] = {**twin, **energy_fields(job, dense, twin)}
        mine, theirs = payload["throughput_tokens_per_s"], payload["dense"]["throughput_tokens_per_s"]
        payload["throughput_vs_dense"] = mine / theirs if mine and theirs else None
    return ServeOutcome(payload, run, dense)


CAPACITY_TOLERANCE = 0.02
"""The capacity search stops when the bracket is within 2% of its lower end."""
MAX_PROBES = 24
"""Most runs one search makes (a doubling phase and a bisection)."""


def meets(payload: dict[str, Any], slo: Slo) -> bool:
    """Whether a run's p99 TTFT, TPOT and end-to-end meet the targets that are given."""
    for name, target in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s), ("e2e_s", slo.e2e_s)):
        if target is None:
            continue
        value = payload[name]["p99"]
        if value is None or value > target:
            return False
    return True


def find_capacity(
    make_job: Callable[[float], ServeJob],
    slo: Slo,
    masked: bool = True,
    start_rate: float = 1.0,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The highest Poisson arrival rate (requests/s) whose run meets `slo` at the 99th
    percentile: doubling from `start_rate` until a rate fails, then bisection to within
    `CAPACITY_TOLERANCE`. Every probe serves the same seeded requests at its rate."""
    if not slo.given:
        raise UserError("a capacity search needs at least one target: --slo-ttft, --slo-tpot or --slo-e2e")
    probes: list[dict[str, Any]] = []

    def probe(rate: float) -> bool:
        job = make_job(rate)
        run = simulate(job, masked=masked)
        figures = summary(run, slo)
        ok = meets(figures, slo)
        probes.append(
            {"rate_per_s": rate, "meets": ok, "ttft_p99_s": figures["ttft_s"]["p99"],
             "tpot_p99_s": figures["tpot_s"]["p99"],
             "throughput_tokens_per_s": figures["throughput_tokens_per_s"]}
        )  # fmt: skip
        if report is not None:
            report(f"rate {rate:.4g}/s: {'meets' if ok else 'misses'} the targets")
        return ok

    low, high = 0.0, start_rate
    while probe(high):
        low, high = high, high * 2
        if len(probes) >= MAX_PROBES:
            break
    while high - low > CAPACITY_TOLERANCE * max(low, start_rate / 64) and len(probes) < MAX_PROBES:
        mid = (low + high) / 2
        if probe(mid):
            low = mid
        else:
            high = mid
    return {"capacity_rate_per_s": low if low > 0 else None, "bracket": [low, high], "probes": probes}


def job_at_rate(job: ServeJob, workload: WorkloadSpec, rate: float) -> ServeJob:
    """`job` with its requests re-drawn at arrival rate `rate` (same seed, same lengths)."""
    arrival = replace(workload.arrival, rate_per_s=rate)
    requests = replace(workload, arrival=arrival, use_file_arrivals=False).build(
        job.model.max_position_embeddings
    )
    return replace(job, requests=requests)
