"""Synthetic traces: the same format, clearly marked synthetic, for studies and
benchmarks at sizes no CPU recording reaches.

A synthetic run is a prefill, a dense collection of T tokens, a first mask, and R
re-triggers spread evenly over the rest, each followed by T - tau dense tokens. Keep counts
per layer come from DART's own allocation (Eq. 4-6) with seeded random layer
sensitivities (`dart`), from one kept fraction for every layer (`uniform`), or there is no
mask at all (`dense`). Kept sets are the top-k of seeded random neuron scores; a fixed
per-neuron component makes consecutive masks overlap as real ones do.
"""

from __future__ import annotations

import numpy as np
import torch

from dartsim import __version__
from dartsim.errors import UserError
from dartsim.policies.dart import rules as policy
from dartsim.policies.dart.params import DartParams
from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import (
    FORMAT_NAME,
    SCHEMA_VERSION,
    model_section,
    new_policy_section,
    pack_mask,
    packed_width,
)
from dartsim.trace.types import Trace

ALLOCATIONS = ("dart", "uniform", "dense")
SCORE_PERSISTENCE = 0.7
"""Weight of the fixed per-neuron component of synthetic scores (0: masks independent
between epochs; 1: identical masks)."""


def _kept_counts(
    spec: ModelSpec, allocation: str, sparsity: float, params: DartParams, gen: torch.Generator
) -> tuple[list[int], dict[str, torch.Tensor]]:
    layers, m = spec.num_layers, spec.intermediate_size
    depth = policy.depth_factor(layers, params.alpha_e, params.alpha_l, params.beta_e, params.beta_l)
    if allocation == "uniform":
        pruning = torch.full((layers,), sparsity, dtype=torch.float64)
        s_bar = torch.zeros(layers, dtype=torch.float64)
        importance = torch.ones(layers, dtype=torch.float64)
    else:
        s_bar = torch.exp(torch.randn(layers, generator=gen, dtype=torch.float64) * 0.5)
        importance = policy.importance_paper(s_bar)
        pruning = policy.allocate_paper(importance, depth, sparsity, params.p_min, params.p_max)
    counts = policy.kept_neurons(pruning, m)
    extras = {"s_bar": s_bar, "importance": importance, "depth": depth, "pruning": pruning}
    return counts, extras


def _top_k_rows(scores: np.ndarray, counts: list[int], out: np.ndarray | None = None) -> np.ndarray:
    """Bool [L, m]: in each row, the `counts[row]` highest scores (a linear-time partition
    per row; the same sets as torch.topk when scores have no ties), written into `out`."""
    layers, m = scores.shape
    mask = np.zeros((layers, m), dtype=bool) if out is None else out
    mask[:] = False
    for layer, k in enumerate(counts):
        if k:
            mask[layer, np.argpartition(scores[layer], m - k)[m - k :]] = True
    return mask


def synth_trace(
    spec: ModelSpec,
    prompt_len: int,
    new_tokens: int,
    retriggers: int,
    sparsity: float,
    allocation: str = "dart",
    seed: int = 0,
    params: DartParams | None = None,
) -> Trace:
    """A synthetic trace of one sequence."""
    p = params or DartParams(sparsity=sparsity)
    if allocation not in ALLOCATIONS:
        raise UserError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if prompt_len <= 0 or new_tokens <= 0:
        raise UserError(
            f"need a prompt of at least 1 token and at least 1 new token, got {prompt_len} and {new_tokens}"
        )
    if retriggers < 0:
        raise UserError(f"--retriggers must be zero or positive, got {retriggers}")
    if prompt_len + new_tokens > spec.max_position_embeddings:
        raise UserError(
            f"prompt {prompt_len} + {new_tokens} new tokens exceeds {spec.name}'s context of "
            f"{spec.max_position_embeddings}"
        )
    decode_steps = new_tokens - 1
    dense_run = allocation == "dense" or sparsity == 0
    gap = p.reference_tokens - p.tau
    if not dense_run:
        if decode_steps <= p.reference_tokens:
            raise UserError(
                f"{new_tokens} new tokens leave no room after the first {p.reference_tokens}-token reference"
            )
        room = decode_steps - p.reference_tokens
        if retriggers and room // (retriggers + 1) <= gap:
            raise UserError(
                f"{retriggers} re-triggers do not fit in {new_tokens} tokens: each needs more than "
                f"{gap} dense tokens after it (T - tau)"
            )
    gen = torch.Generator().manual_seed(seed)
    layers, m = spec.num_layers, spec.intermediate_size
    epoch_of = torch.full((1 + decode_steps,), -1, dtype=torch.int32)
    first_steps: list[int] = []
    trigger_steps: list[int] = []
    if not dense_run:
        start = 1 + p.reference_tokens
        room = decode_steps - p.reference_tokens
        fires = [start + (i + 1) * room // (retriggers + 1) for i in range(retriggers)]
        first_steps.append(start)
        trigger_steps.append(-1)
        for fire in fires:
            trigger_steps.append(fire)
            first_steps.append(fire + gap + 1)
        bounds = [*first_steps[1:], 1 + decode_steps]
        for e, (first, end) in enumerate(zip(first_steps, bounds, strict=True)):
            stop = trigger_steps[e + 1] + 1 if e + 1 < len(trigger_steps) else end
            epoch_of[first:stop] = e
    counts, extras = _kept_counts(spec, allocation, sparsity, p, gen)
    base = torch.rand(layers, m, generator=gen)
    kept_rows: list[torch.Tensor] = []
    base.mul_(SCORE_PERSISTENCE)
    # One buffer each for scores, the mask and all packed masks: allocating them per epoch
    # fragments the heap and costs about the scores' size in resident memory per epoch.
    scores = torch.empty(layers, m)
    mask_buffer = np.empty((layers, m), dtype=bool)
    packed = np.empty((len(first_steps), layers, packed_width(m)), dtype=np.uint8)
    for e in range(len(first_steps)):
        torch.rand(layers, m, generator=gen, out=scores).mul_(1 - SCORE_PERSISTENCE).add_(base)
        _top_k_rows(scores.numpy(), counts, mask_buffer)
        packed[e] = pack_mask(torch.from_numpy(mask_buffer)).numpy()
        kept_rows.append(torch.tensor(counts, dtype=torch.int32))
    masks = torch.from_numpy(packed)
    epochs_n = len(first_steps)
    last_steps = []
    for e in range(epochs_n):
        idx = torch.nonzero(epoch_of == e).flatten()
        last_steps.append(int(idx[-1]) if idx.numel() else first_steps[e] - 1)
    context = torch.tensor(
        [prompt_len] + [prompt_len + j for j in range(1, decode_steps + 1)], dtype=torch.int32
    )
    matrix = {k: v.unsqueeze(0).repeat(epochs_n, 1) for k, v in extras.items()}
    fired = [s for s in trigger_steps if s >= 0]
    return Trace.from_dict(
        {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "complete": True,
            "status": "complete",
            "synthetic": True,
            "created_by": f"dartsim {__version__} trace synth",
            "seed": seed,
            "versions": {"dartsim": __version__},
            "model": model_section(spec, spec.source, True, "none", "none"),
            "policy": new_policy_section("dart", spec.num_layers, spec.num_heads),
            "generation": {
                "prompt": "",
                "prompt_len": prompt_len,
                "generated_len": new_tokens,
                "stopped_at_eos": False,
                "prompt_ids": torch.zeros(0, dtype=torch.int64),
                "generated_ids": torch.zeros(0, dtype=torch.int64),
            },
            "dart": {
                **p.as_dict(),
                "sparsity": sparsity,
                "mode": "dense" if dense_run else "dart",
                "allocation": allocation,
            },
            "steps": {
                "phase": torch.tensor([0] + [1] * decode_steps, dtype=torch.uint8),
                "tokens": torch.tensor([prompt_len] + [1] * decode_steps, dtype=torch.int32),
                "context_len": context,
                "epoch": epoch_of,
                "time_s": torch.zeros(1 + decode_steps, dtype=torch.float64),
            },
            "epochs": {
                "first_step": torch.tensor(first_steps, dtype=torch.int32),
                "last_step": torch.tensor(last_steps, dtype=torch.int32),
                "trigger_step": torch.tensor(trigger_steps, dtype=torch.int32),
                "reference_tokens": torch.full((epochs_n,), p.reference_tokens, dtype=torch.int32),
                "build_time_s": torch.zeros(epochs_n, dtype=torch.float64),
                "kept": torch.stack(kept_rows) if kept_rows else torch.zeros(0, layers, dtype=torch.int32),
                "keep_ratio": (torch.stack(kept_rows).double() / m)
                if kept_rows
                else torch.zeros(0, layers, dtype=torch.float64),
                "masks": masks,
                **{
                    k: (v if epochs_n else torch.zeros(0, layers, dtype=torch.float64))
                    for k, v in matrix.items()
                },
            },
            "drift_checks": {
                "step": torch.tensor(fired, dtype=torch.int32),
                "similarity": torch.zeros(len(fired), dtype=torch.float64),
                "mu": torch.zeros(len(fired), dtype=torch.float64),
                "sigma": torch.zeros(len(fired), dtype=torch.float64),
                "threshold": torch.zeros(len(fired), dtype=torch.float64),
                "counter": torch.full((len(fired),), p.c0, dtype=torch.int32),
                "detected": torch.ones(len(fired), dtype=torch.bool),
                "fired": torch.ones(len(fired), dtype=torch.bool),
            },
            "retriggers": {
                "step": torch.tensor(fired, dtype=torch.int32),
                "epoch": torch.arange(1, len(fired) + 1, dtype=torch.int32),
            },
            "figure5": {"window": 10, "similarity": torch.zeros(0, dtype=torch.float64)},
        }
    )
