"""Iteration-level continuous batching, as vLLM's V1 scheduler runs it.

Each iteration the scheduler spends a token budget (`max_num_batched_tokens`): first on the
running requests in admission order (a decode takes one token, an unfinished prompt the
rest of its prompt, cut to the budget: chunked prefill, mixed with the decodes as
Sarathi-Serve does), then, if nothing had to be preempted, on waiting requests in arrival
order (FCFS) while fewer than `max_num_seqs` run. KV-cache memory is paged: a request holds
ceil(tokens / `block_size`) blocks of the pool the device memory leaves once the weights and
the stack's reserve are taken. When a running request needs a block and none is free the
newest running request is preempted: by recompute (vLLM V1's only way: its blocks are
freed and its prompt and generated tokens are prefilled again when it is readmitted) or by
swap (vLLM V0's option: its KV cache moves to host memory over the host link and back when
readmitted, both charged to the iteration that moves it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec
from dartsim.units import GiB

PREEMPTIONS = ("recompute", "swap")
ADMISSIONS = ("on-demand", "reserve")
"""How a request gets KV-cache blocks: `on-demand` as its tokens arrive, preempting the
newest request when the pool runs out (vLLM); `reserve` for its prompt and its whole output
when it is admitted, so that no running request is ever preempted (TensorRT-LLM's default
capacity scheduler, CapacitySchedulerPolicy.GUARANTEED_NO_EVICT)."""
DEFAULT_BLOCK_SIZE = 16
"""Tokens per KV-cache block: vLLM's default `block_size` on CUDA (vLLM CacheConfig)."""
LARGE_DEVICE_BYTES = 70 * GiB
"""vLLM raises its API-server batching defaults on devices of at least 70 GiB other than the
A100 (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults; the A100 exception from vLLM
PR #17885, where the larger budget lowered its throughput)."""
VLLM_LARGE = (8192, 1024)
VLLM_OTHER = (2048, 256)
"""(max_num_batched_tokens, max_num_seqs) vLLM's OpenAI API server takes by default on large
devices and on the others (same source)."""


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool = True
    block_size: int = DEFAULT_BLOCK_SIZE
    preemption: str = "recompute"
    admission: str = "on-demand"

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.preemption not in PREEMPTIONS:
            raise UserError(f"preemption must be one of {', '.join(PREEMPTIONS)}, got {self.preemption!r}")
        if self.admission not in ADMISSIONS:
            raise UserError(f"admission must be one of {', '.join(ADMISSIONS)}, got {self.admission!r}")


def default_scheduler(hw: HardwareSpec) -> SchedulerConfig:
    """vLLM V1's API-server defaults for this device (see `LARGE_DEVICE_BYTES`)."""
    large = hw.memory.capacity_bytes >= LARGE_DEVICE_BYTES and not hw.name.startswith("a100")
    tokens, seqs = VLLM_LARGE if large else VLLM_OTHER
    return SchedulerConfig(max_num_seqs=seqs, max_num_batched_tokens=tokens)


class Request:
    """One request's progress. `computed` counts tokens whose KV is in the cache; the
    request's next step runs `tokens - computed` tokens (its prompt, its rest, or one)."""

    __slots__ = (
        "arrival_s",
        "blocks",
        "computed",
        "epoch",
        "finish_s",
        "first_scheduled_s",
        "first_token_s",
        "generated",
        "index",
        "output",
        "past_trace",
        "preemptions",
        "prompt",
        "ready_s",
        "replica",
        "swapped",
        "trace",
    )  # fmt: skip

    def __init__(
        self, index: int, arrival_s: float, ready_s: float, prompt: int, output: int, trace: int
    ) -> None:
        self.index = index
        self.arrival_s = arrival_s
        self.ready_s = ready_s
        self.prompt = prompt
        self.output = output
        self.trace = trace
        self.computed = 0
        self.generated = 0
        self.blocks = 0
        self.first_scheduled_s = float("nan")
        self.first_token_s = float("nan")
        self.finish_s = float("nan")
        self.preemptions = 0
        self.swapped = False
        self.epoch: int | None = None
        self.replica = 0
        self.past_trace = 0

    @property
    def tokens(self) -> int:
        return self.prompt + self.generated

    @property
    def decoding(self) -> bool:
        return self.generated > 0 and self.computed == self.tokens - 1


class Scheduler:
    """One replica's queues and KV-cache pool."""

    def __init__(self, config: SchedulerConfig, kv_blocks: int) -> None:
        self.config = config
        self.total_blocks = kv_blocks
        self.free_blocks = kv_blocks
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.preemptions = 0

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    @property
    def load(self) -> int:
        """Requests this replica holds (what a least-loaded router compares)."""
        return len(self.waiting) + len(self.running)

    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def _preempt(self, victim: Request, swapped_out: list[Request]) -> None:
        self.free_blocks += victim.blocks
        victim.blocks = 0
        victim.preemptions += 1
        self.preemptions += 1
        if self.config.preemption == "swap":
            victim.swapped = True
            swapped_out.append(victim)
        else:
            victim.computed = 0
        self.waiting.appendleft(victim)

    def schedule(self, now: float) -> tuple[list[tuple[Request, int]], list[Request], list[Request]]:
        """This iteration's (request, new tokens), the requests swapped out to make room and
        those swapped back in."""
        cfg = self.config
        budget = cfg.max_num_batched_tokens
        scheduled: list[tuple[Request, int]] = []
        swapped_out: list[Request] = []
        swapped_in: list[Request] = []
        preempted = False
        block, chunked = cfg.block_size, cfg.chunked_prefill
        reserve = cfg.admission == "reserve"
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            # the hot loop of a long run: `tokens` and `blocks_for` written out
            want = req.prompt + req.generated - req.computed
            if not chunked and want > budget:
                break
            new = want if want < budget else budget
            need = max(0, -(-(req.computed + new) // block) - req.blocks)  # 0 when reserved
            while need > self.free_blocks and self.running[-1] is not req:
                self._preempt(self.running.pop(), swapped_out)
                preempted = True
            if need > self.free_blocks:  # only the request itself is left to give way
                self._preempt(self.running.pop(), swapped_out)
                preempted = True
                break
            self.free_blocks -= need
            req.blocks += need
            scheduled.append((req, new))
            budget -= new
            i += 1
        if preempted:
            return scheduled, swapped_out, swapped_in
        while self.waiting and budget > 0 and len(self.running) < cfg.max_num_seqs:
            req = self.waiting[0]
            if req.ready_s > now:
                break
            want = req.tokens - req.computed
            if not cfg.chunked_prefill and want > budget:
                break
            new = min(want, budget)
            held = req.prompt + req.output if reserve else req.computed + new
            need = self.blocks_for(held) - req.blocks
            if need > self.free_blocks:
                break
            self.waiting.popleft()
            self.free_blocks -= need
            req.blocks += need
            if req.swapped:
                req.swapped = False
                swapped_in.append(req)
            if req.first_scheduled_s != req.first_scheduled_s:  # NaN: first time
                req.first_scheduled_s = now
            self.running.append(req)
            scheduled.append((req, new))
            budget -= new
        return scheduled, swapped_out, swapped_in

    def finish(self, req: Request) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0
        self.running.remove(req)
