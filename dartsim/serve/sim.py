"""The serving simulation: requests arrive, a router sends each to a replica, and every
replica runs iterations back to back while it has work, each iteration costed on the
device model with the union of its requests' masks.

The simulation is event-driven (a heap of arrivals and iteration ends, ties broken by a
sequence number, so runs are deterministic): an iteration starts when the previous one
ends or, on an idle replica, when a request becomes ready; requests that arrive during an
iteration wait for the next. A request is ready `prefill.request_overhead_us` (the stack's
host handling) after it arrives.
"""

from __future__ import annotations

import heapq
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from dartsim.engine.replay_config import ReplayConfig
from dartsim.errors import UserError
from dartsim.replay.capacity import choose_tp, memory_needed_bytes, usable_bytes
from dartsim.replay.job import check_formats
from dartsim.serve.cost import IterationCoster
from dartsim.serve.masks import MaskPool, UnionTracker
from dartsim.serve.scheduler import Request, Scheduler, SchedulerConfig, default_scheduler
from dartsim.serve.workload import Requests
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.specs.stack import StackSpec, default_stack
from dartsim.trace.types import Trace
from dartsim.workload import Precision
from dartsim.workload.policy_costs import NO_POLICY_COSTS

ROUTERS = ("round-robin", "least-loaded")
MASK_APPLY = ("gather", "compact")
PROGRESS_MIN_REQUESTS = 2000
"""Runs with fewer requests finish too fast for a progress bar to help."""


@dataclass(frozen=True)
class ServeJob:
    """One serving run: `requests` on `replicas` copies of `model` on `hardware` (each of
    `tp` devices) under `stack`, with each request drawing masks from `traces` (none:
    dense)."""

    model: ModelSpec
    hardware: HardwareSpec
    requests: Requests
    traces: tuple[Trace, ...] = ()
    tp: int | str = "auto"
    stack: StackSpec | None = None
    precision: Precision = field(default_factory=Precision)
    scheduler: SchedulerConfig | None = None
    replicas: int = 1
    router: str = "round-robin"
    concurrency: int | None = None
    """A closed loop of this many users (requests then arrive as earlier ones finish)."""
    seed: int = 0
    progress: bool = False
    mask_apply: str = "gather"
    """How a step applies its union of masks: gather (the union's rows read by index from
    the full weights: the default, since the union changes every step) or compact (each
    request's mask build copies its kept rows, as a lone sequence would)."""

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise UserError(f"--router must be one of {', '.join(ROUTERS)}, got {self.router!r}")
        if self.mask_apply not in MASK_APPLY:
            raise UserError(f"--mask-apply must be one of {', '.join(MASK_APPLY)}, got {self.mask_apply!r}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise UserError(f"--replicas must be a positive integer, got {self.replicas!r}")

    def software(self) -> StackSpec:
        return self.stack if self.stack is not None else default_stack(self.hardware)

    def schedule_config(self) -> SchedulerConfig:
        return self.scheduler if self.scheduler is not None else default_scheduler(self.hardware)


@dataclass
class Iterations:
    """One row per iteration, in start order."""

    replica: list[int] = field(default_factory=list)
    start_s: list[float] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    kept_fraction: list[float] = field(default_factory=list)
    dense: list[bool] = field(default_factory=list)
    mask_builds: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    """DRAM bytes per device: the step's and its mask builds'."""
    flops: list[int] = field(default_factory=list)
    link_bytes: list[int] = field(default_factory=list)
    host_bytes: list[int] = field(default_factory=list)
    """Bytes over the host link per device: swaps and mask uploads."""

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name)) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Capacity:
    tp: int
    kv_blocks: int
    block_size: int
    kv_bytes_per_token: int
    weight_bytes: int


@dataclass
class ServeRun:
    """What one run gave: per request and per iteration."""

    requests: list[Request]
    iterations: dict[str, np.ndarray]
    capacity: Capacity
    preemptions: int
    masked: bool
    past_trace_steps: int


def capacity(job: ServeJob, stack: StackSpec, config: SchedulerConfig) -> Capacity:
    """The tensor-parallel degree and the KV-cache blocks each replica's devices hold."""
    spec, hw, prec = job.model, job.hardware, job.precision
    longest = int((job.requests.prompt_tokens + job.requests.output_tokens).max())
    reserve = stack.memory.reserve_fraction
    tp = choose_tp(spec, hw, prec, str(job.tp), longest, reserve)
    weights = memory_needed_bytes(spec, prec, tp, 0)
    per_token = memory_needed_bytes(spec, prec, tp, 1) - weights
    block_bytes = per_token * config.block_size
    blocks = int((usable_bytes(hw, reserve) - weights) // block_bytes)
    need = -(-longest // config.block_size)
    if blocks < need:
        raise UserError(
            f"the longest request ({longest} tokens) needs {need} KV-cache blocks of {config.block_size} "
            f"tokens; {hw.name} at --tp {tp} holds {blocks}"
        )
    if not config.chunked_prefill and longest > config.max_num_batched_tokens:
        raise UserError(
            f"without chunked prefill a prompt runs whole, and one preempted by recompute runs "
            f"again with its output: the longest request ({longest} tokens) exceeds "
            f"--max-batched-tokens {config.max_num_batched_tokens}"
        )
    return Capacity(tp, blocks, config.block_size, per_token, weights)


def simulate(job: ServeJob, masked: bool = True) -> ServeRun:
    """Serve `job.requests`; with `masked` off (or no traces) every step is dense."""
    stack = job.software()
    check_formats(job.hardware, job.precision, stack)
    config = job.schedule_config()
    cap = capacity(job, stack, config)
    use_masks = masked and bool(job.traces)
    pool = MaskPool(job.traces, job.model, cap.tp) if use_masks else None
    replay = ReplayConfig(stack=stack, tp=cap.tp, precision=job.precision, mask_apply=job.mask_apply)
    costs = pool.costs if pool is not None else NO_POLICY_COSTS
    coster = IterationCoster(job.model, job.hardware, replay, costs)
    width, layers = job.model.intermediate_size, job.model.num_layers
    dense_kept = (width,) * layers
    n = len(job.requests)
    rng = np.random.default_rng(job.seed)
    draws = rng.integers(0, len(job.traces), size=n) if use_masks else np.full(n, -1)
    overhead = stack.prefill.request_overhead_s
    arrivals = job.requests.arrival_s
    closed = job.concurrency is not None
    reqs = [
        Request(
            i,
            float(arrivals[i]) if not closed else math.nan,
            float(arrivals[i]) + overhead if not closed else math.nan,
            int(job.requests.prompt_tokens[i]),
            int(job.requests.output_tokens[i]),
            int(draws[i]),
        )
        for i in range(n)
    ]
    schedulers = [Scheduler(config, cap.kv_blocks) for _ in range(job.replicas)]
    trackers = [UnionTracker(pool) for _ in range(job.replicas)] if pool is not None else None
    host = job.hardware.host_link
    rows = Iterations()
    events: list[tuple[float, int, int, int]] = []  # (time, kind 0 end / 1 ready, seq, index)
    seq = 0

    def push(time_s: float, kind: int, index: int) -> None:
        nonlocal seq
        heapq.heappush(events, (time_s, kind, seq, index))
        seq += 1

    released = 0
    if closed:
        assert job.concurrency is not None
        for _ in range(min(job.concurrency, n)):
            reqs[released].arrival_s, reqs[released].ready_s = 0.0, overhead
            push(overhead, 1, released)
            released += 1
    else:
        for r in reqs:
            push(r.ready_s, 1, r.index)
    busy = [False] * job.replicas
    in_flight: list[list[tuple[Request, int]]] = [[] for _ in range(job.replicas)]
    turn = 0
    done = 0
    bar = None
    if job.progress and n >= PROGRESS_MIN_REQUESTS:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="serving", unit="request", file=sys.stderr)

    def start(replica: int, now: float) -> None:
        sched = schedulers[replica]
        batch, swapped_out, swapped_in = sched.schedule(now)
        if not batch:
            busy[replica] = False
            return
        news = [new for _, new in batch]
        contexts = [r.computed + new for r, new in batch]
        extra = 0.0
        builds = build_bytes = build_flops = build_host = 0
        moved = sum(r.computed for r in swapped_out + swapped_in) * cap.kv_bytes_per_token
        if moved:
            extra += moved / host.bandwidth_bytes_per_s_per_direction + host.latency_s
        if trackers is not None and pool is not None:
            tracker = trackers[replica]
            present = set()
            observe = False
            for r, _new in batch:
                present.add(r.index)
                timeline = pool.timelines[r.trace]
                if r.generated == 0:  # its prompt: under the trace's prefill epoch
                    epoch = timeline.prefill_epoch
                    observe = observe or timeline.prefill_observes
                else:  # decode step `position` (or a recomputed prefill under its mask)
                    position = r.generated - 1
                    epoch = timeline.epoch_at(position)
                    if position >= timeline.decode_epochs.size:
                        r.past_trace += 1
                    if epoch >= 0 and r.epoch is not None and epoch != r.epoch:
                        seconds, b, f, h = coster.mask_build(pool.kept(r.trace, epoch))
                        extra += seconds
                        builds += 1
                        build_bytes, build_flops, build_host = (
                            build_bytes + b,
                            build_flops + f,
                            build_host + h,
                        )
                    observe = observe or timeline.decode_observes.get(epoch, False)
                r.epoch = epoch
                tracker.set(r.index, r.trace, epoch)
            for index in [i for i in tracker.held if i not in present]:
                tracker.remove(index)
            kept = coster.charged(tracker.union())
            dense = tracker.dense
        else:
            kept, observe, dense = dense_kept, False, True
        cost = coster.cost(news, contexts, kept, observe)
        elapsed = cost.time_s + extra
        rows.replica.append(replica)
        rows.start_s.append(now)
        rows.time_s.append(elapsed)
        rows.sequences.append(len(batch))
        rows.prompt_tokens.append(sum(new for r, new in batch if not r.decoding))
        rows.kept_fraction.append(sum(kept) / (width * layers))
        rows.dense.append(dense)
        rows.mask_builds.append(builds)
        rows.bytes.append(cost.bytes + build_bytes)
        rows.flops.append(cost.flops + build_flops)
        rows.link_bytes.append(cost.link_bytes)
        rows.host_bytes.append(moved + build_host)
        in_flight[replica] = batch
        busy[replica] = True
        push(now + elapsed, 0, replica)

    def route(req: Request) -> int:
        nonlocal turn
        if job.router == "round-robin":
            choice = turn % job.replicas
            turn += 1
            return choice
        loads = [s.load for s in schedulers]
        return loads.index(min(loads))

    while events:
        now, kind, _, index = heapq.heappop(events)
        if kind == 1:  # a request is ready: route it, wake its replica
            req = reqs[index]
            replica = route(req)
            req.replica = replica
            schedulers[replica].waiting.append(req)
            if not busy[replica]:
                start(replica, now)
            continue
        replica = index
        sched = schedulers[replica]
        for req, new in in_flight[replica]:
            req.computed += new
            if req.computed < req.tokens:
                continue
            req.generated += 1
            if req.generated == 1:
                req.first_token_s = now
            if req.generated >= req.output:
                req.finish_s = now
                sched.finish(req)
                if trackers is not None:
                    trackers[replica].remove(req.index)
                done += 1
                if bar is not None:
                    bar.update(1)
                if closed and released < n:
                    nxt = reqs[released]
                    nxt.arrival_s, nxt.ready_s = now, now + overhead
                    push(nxt.ready_s, 1, released)
                    released += 1
        in_flight[replica] = []
        start(replica, now)
    if bar is not None:
        bar.close()
    if done != n:  # pragma: no cover - a scheduler bug, not a user error
        raise RuntimeError(f"serving stopped with {n - done} of {n} requests unfinished")
    return ServeRun(
        reqs,
        rows.arrays(),
        cap,
        sum(s.preemptions for s in schedulers),
        use_masks,
        sum(r.past_trace for r in reqs),
    )
