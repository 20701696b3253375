"""From traces to the steps a replay costs.

A trace (or several, as one batch) becomes a list of steps: the prompts' prefill, as the
software stack schedules it (batched: every prompt in one step, its tokens summed and
attention per sequence; chunked: the same in steps of at most `chunk_tokens` tokens, a
prompt split across steps where it must; sequential: one prompt per step), then the
decode steps in lockstep (a sequence that has finished drops out of the batch), grouped
into runs over which nothing changes but the contexts (each grows by one per step): the
same sequences, the same mask epochs, no mask build. Per layer a step fetches the FFN
neurons of the union of the running sequences' kept sets.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from dartsim.engine.replay_config import ReplayStep
from dartsim.errors import UserError
from dartsim.replay.charges import batch_policy, head_counts
from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import PHASE_DECODE, PHASE_PREFILL
from dartsim.trace.types import Trace
from dartsim.workload import kept_count


def depth_map(source_layers: int, target_layers: int) -> list[int]:
    """For each target layer, the source layer at the same normalised depth."""
    if target_layers == 1 or source_layers == 1:
        return [0] * target_layers
    return [round(layer / (target_layers - 1) * (source_layers - 1)) for layer in range(target_layers)]


def check_retarget(traces: Sequence[Trace], target: ModelSpec) -> tuple[bool, str]:
    """Whether the traces' model differs from `target`; errors if they cannot be replayed on it."""
    names = {t.model.name for t in traces}
    shapes = {(t.model.num_layers, t.model.intermediate_size) for t in traces}
    if len(names) > 1 or len(shapes) > 1:
        raise UserError(f"traces from different models cannot form one batch: {', '.join(sorted(names))}")
    longest = max(t.longest_context for t in traces)
    if longest > target.max_position_embeddings:
        raise UserError(
            f"the traces reach a context of {longest} positions, beyond {target.name}'s "
            f"{target.max_position_embeddings}: they cannot be retargeted to it"
        )
    source = traces[0].model
    same = (
        source.num_layers == target.num_layers
        and source.intermediate_size == target.intermediate_size
        and source.hidden_size == target.hidden_size
    )
    return (not same), source.name


def busiest_shard_kept(mask: np.ndarray, tp: int) -> np.ndarray:
    """Per layer, `tp` times the kept neurons of the busiest of `tp` contiguous FFN shards
    (Megatron splits neurons by index range): [L, m] bool -> [L] int. Passed as a layer's
    kept count, the workload model's even split then gives that device's exact share."""
    layers, width = mask.shape
    per_shard = mask.reshape(layers, tp, width // tp).sum(axis=-1)
    return per_shard.max(axis=-1) * tp


def prefill_pieces(
    prompts: Sequence[int], scheduling: str, chunk_tokens: int | None
) -> list[list[tuple[int, int, int]]]:
    """The prefill steps of prompts of these lengths: per step, the (sequence, new tokens,
    context after the step) of every sequence in it."""
    if scheduling == "sequential":
        return [[(i, n, n)] for i, n in enumerate(prompts)]
    if scheduling == "batched" or chunk_tokens is None:
        return [[(i, n, n) for i, n in enumerate(prompts)]]
    if scheduling != "chunked":
        raise ValueError(f"unknown prefill scheduling {scheduling!r}")
    out: list[list[tuple[int, int, int]]] = []
    step: list[tuple[int, int, int]] = []
    budget = chunk_tokens
    for i, n in enumerate(prompts):
        done = 0
        while done < n:
            take = min(n - done, budget)
            done += take
            step.append((i, take, done))
            budget -= take
            if budget == 0:
                out.append(step)
                step, budget = [], chunk_tokens
    if step:
        out.append(step)
    return out


def build_steps(
    traces: Sequence[Trace],
    target: ModelSpec,
    retarget: bool,
    tp: int = 1,
    scheduling: str = "batched",
    chunk_tokens: int | None = None,
) -> list[ReplayStep]:
    """The batch's steps: the prefill as `scheduling` says, then runs of decode steps in
    lockstep (see the module docstring).

    Under tensor parallelism (`tp` > 1) on the traces' own model, each layer's kept count
    is that of the busiest device given where the kept neurons fall; a retargeted trace's
    neuron indices mean nothing on the target, so its kept neurons are split evenly.

    The traces' policy (trace v2) adds its costs to every step: weight storage, a
    per-token predictor, pruned heads while a mask is in force, and what a mask switch
    does. A per-token policy's masks change every step by design: its steps group by kept
    counts and no mask build is charged.
    """
    views = list(traces)
    source = traces[0].model
    source_layers = source.num_layers
    source_width = source.intermediate_size
    layer_of = depth_map(source_layers, target.num_layers) if retarget else list(range(target.num_layers))
    policy, section = batch_policy(traces)
    costs = policy.costs(section, source.hidden_size, target)
    pruned_heads = head_counts(section, source, target, layer_of, retarget)
    per_token = policy.per_token
    m = target.intermediate_size
    dense = tuple([m] * target.num_layers)
    union_cache: dict[tuple[tuple[int, int], ...], tuple[int, ...]] = {}

    def kept_for(active: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """Kept neurons per target layer: the union of the active sequences' masks."""
        if any(epoch < 0 for _, epoch in active):
            return dense
        if active not in union_cache:
            first, first_epoch = active[0]
            shard_aware = tp > 1 and not retarget and source_width % tp == 0 and not per_token
            if len(active) == 1 and not shard_aware:
                counts = views[first].epochs.kept[first_epoch]
            else:
                union = views[first].mask(first_epoch)
                for index, epoch in active[1:]:
                    union |= views[index].mask(epoch)
                counts = busiest_shard_kept(union, tp) if shard_aware else union.sum(axis=-1)
            ratios = counts.astype(np.float64) / source_width
            union_cache[active] = tuple(
                kept_count(float(ratios[layer_of[i]]), m) for i in range(target.num_layers)
            )
        return union_cache[active]

    def heads_for(active: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...] | None:
        return pruned_heads if pruned_heads is not None and all(e >= 0 for _, e in active) else None

    def canonical(view: Trace) -> np.ndarray:
        """Per epoch, the first epoch with the same kept counts (per-token policies)."""
        first: dict[tuple[int, ...], int] = {}
        kept = view.epochs.kept
        return np.array(
            [first.setdefault(tuple(row.tolist()), e) for e, row in enumerate(kept)], dtype=np.int64
        )

    steps: list[ReplayStep] = []
    decode: list[tuple[np.ndarray, np.ndarray]] = []
    prompts, first_epochs = [], []
    for view in views:
        s = view.steps
        if int(s.phase[0]) != PHASE_PREFILL:
            raise UserError("a trace must start with its prefill step")
        if int(s.tokens[0]) != int(s.context_len[0]):
            raise UserError("a trace's prefill must start from an empty cache (its tokens are its context)")
        prompts.append(int(s.tokens[0]))
        first_epochs.append(int(s.epoch[0]))
    for pieces in prefill_pieces(prompts, scheduling, chunk_tokens):
        active = tuple((i, first_epochs[i]) for i, _, _ in pieces)
        news = tuple(n for _, n, _ in pieces)
        steps.append(
            ReplayStep(
                "prefill",
                max(news),
                tuple(c for _, _, c in pieces),
                kept_for(active),
                any(policy.observes(views[i], e, "prefill") for i, e in active),
                heads=heads_for(active),
                policy=costs,
                news=news if len(set(news)) > 1 else None,
                completes=sum(1 for i, _, c in pieces if c == prompts[i]),
            )
        )
    for view in views:
        s = view.steps
        rest = s.phase[1:] == PHASE_DECODE
        epochs = s.epoch[1:][rest]
        if per_token and epochs.size:
            table = canonical(view)
            epochs = np.where(epochs >= 0, table[np.maximum(epochs, 0)], epochs)
        decode.append((s.context_len[1:][rest].astype(np.int64), epochs))
    longest = max(len(c) for c, _ in decode)
    breaks = {0, longest}
    for ctx, ep in decode:
        breaks.add(len(ctx))
        changed = (ep[1:] != ep[:-1]) | (ctx[1:] != ctx[:-1] + 1)
        breaks.update((np.nonzero(changed)[0] + 1).tolist())
    bounds = sorted(b for b in breaks if b <= longest)
    last_epoch = [int(v.steps.epoch[0]) for v in views]
    for start, end in itertools.pairwise(bounds):
        active = tuple((i, int(ep[start])) for i, (_, ep) in enumerate(decode) if start < len(ep))
        contexts = tuple(int(decode[i][0][start]) for i, _ in active)
        builds = []
        for i, epoch in active:
            if epoch >= 0 and epoch != last_epoch[i] and not per_token:
                builds.append(kept_for(((i, epoch),)))
            last_epoch[i] = epoch
        steps.append(
            ReplayStep(
                "decode",
                1,
                contexts,
                kept_for(active),
                any(policy.observes(views[i], e, "decode") for i, e in active),
                tuple(builds),
                count=end - start,
                heads=heads_for(active),
                policy=costs,
            )
        )
    return steps


def step_count(steps: Sequence[ReplayStep]) -> int:
    """Steps in a list of runs."""
    return sum(step.count for step in steps)


def expand(steps: Sequence[ReplayStep]) -> list[ReplayStep]:
    """Every step of a list of runs, one by one."""
    return [step.at(j) for step in steps for j in range(step.count)]


def step_at(steps: Sequence[ReplayStep], index: int) -> ReplayStep:
    """Step `index` (counting every step of every run), alone."""
    for step in steps:
        if index < step.count:
            return step.at(index)
        index -= step.count
    raise IndexError("step index beyond the run")
