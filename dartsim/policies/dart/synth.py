"""Synthetic traces: the same format, clearly marked synthetic, for studies and
benchmarks at sizes no CPU recording reaches. Built with numpy alone (no torch), so that
`dartsim simulate` starts fast.

A synthetic run is a prefill, a dense collection of T tokens, a first mask, and R
re-triggers spread evenly over the rest, each followed by T - tau dense tokens. Keep counts
per layer come from DART's own allocation (Eq. 4-6) with seeded random layer
sensitivities (`dart`), from one kept fraction for every layer (`uniform`), or there is no
mask at all (`dense`). Kept sets are the top-k of seeded random neuron scores; a fixed
per-neuron component makes consecutive masks overlap as real ones do.
"""

from __future__ import annotations

import numpy as np

from dartsim import __version__
from dartsim.errors import UserError
from dartsim.policies.dart import allocation as budgets
from dartsim.policies.dart.params import DartParams
from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import FIGURE5_WINDOW, FORMAT_NAME, SCHEMA_VERSION, model_section, packed_width
from dartsim.trace.types import Trace

ALLOCATIONS = ("dart", "uniform", "dense")
SCORE_PERSISTENCE = 0.7
"""Weight of the fixed per-neuron component of synthetic scores (0: masks independent
between epochs; 1: identical masks)."""
SENSITIVITY_SPREAD = 0.5
"""Synthetic layer sensitivities are exp(N(0, 0.5^2)): they spread over a few x, as
recorded ones do (traces/README.md)."""


def _kept_counts(
    spec: ModelSpec, allocation: str, sparsity: float, params: DartParams, rng: np.random.Generator
) -> tuple[list[int], dict[str, np.ndarray]]:
    layers, m = spec.num_layers, spec.intermediate_size
    depth = budgets.depth_factor(layers, params.alpha_e, params.alpha_l, params.beta_e, params.beta_l)
    if allocation == "uniform":
        pruning = np.full(layers, sparsity, dtype=np.float64)
        s_bar = np.zeros(layers, dtype=np.float64)
        importance = np.ones(layers, dtype=np.float64)
    else:
        s_bar = np.exp(rng.standard_normal(layers) * SENSITIVITY_SPREAD)
        importance = budgets.importance_paper(s_bar)
        pruning = budgets.allocate_paper(importance, depth, sparsity, params.p_min, params.p_max)
    counts = budgets.kept_neurons(pruning, m)
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
    rng = np.random.default_rng(seed)
    layers, m = spec.num_layers, spec.intermediate_size
    epoch_of = np.full(1 + decode_steps, -1, dtype=np.int32)
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
    counts, extras = _kept_counts(spec, allocation, sparsity, p, rng)
    epochs_n = len(first_steps)
    # One buffer each for the scores, the mask and all packed masks: allocating them per
    # epoch fragments the heap and costs about the scores' size in resident memory per epoch.
    base = rng.random((layers, m), dtype=np.float32) * np.float32(SCORE_PERSISTENCE)
    scores = np.empty((layers, m), dtype=np.float32)
    mask_buffer = np.empty((layers, m), dtype=bool)
    packed = np.empty((epochs_n, layers, packed_width(m)), dtype=np.uint8)
    for e in range(epochs_n):
        rng.random(out=scores, dtype=np.float32)
        scores *= np.float32(1 - SCORE_PERSISTENCE)
        scores += base
        _top_k_rows(scores, counts, mask_buffer)
        packed[e] = np.packbits(mask_buffer, axis=-1, bitorder="little")
    kept = np.tile(np.array(counts, dtype=np.int32), (epochs_n, 1))
    last_steps = []
    for e in range(epochs_n):
        idx = np.nonzero(epoch_of == e)[0]
        last_steps.append(int(idx[-1]) if idx.size else first_steps[e] - 1)
    context = np.array([prompt_len] + [prompt_len + j for j in range(1, decode_steps + 1)], dtype=np.int32)
    fired = np.array([s for s in trigger_steps if s >= 0], dtype=np.int32)
    nothing = np.zeros(fired.size, dtype=np.float64)
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
            "policy": {
                "name": "dart",
                "params": {},
                "head_masks": np.ones((layers, spec.num_heads), dtype=bool),
                "weight_format": "dense",
                "weight_density": np.ones(layers, dtype=np.float64),
            },
            "generation": {
                "prompt": "",
                "prompt_len": prompt_len,
                "generated_len": new_tokens,
                "stopped_at_eos": False,
                "prompt_ids": np.zeros(0, dtype=np.int64),
                "generated_ids": np.zeros(0, dtype=np.int64),
            },
            "dart": {
                **p.as_dict(),
                "sparsity": sparsity,
                "mode": "dense" if dense_run else "dart",
                "allocation": allocation,
            },
            "steps": {
                "phase": np.array([0] + [1] * decode_steps, dtype=np.uint8),
                "tokens": np.array([prompt_len] + [1] * decode_steps, dtype=np.int32),
                "context_len": context,
                "epoch": epoch_of,
                "time_s": np.zeros(1 + decode_steps, dtype=np.float64),
            },
            "epochs": {
                "first_step": np.array(first_steps, dtype=np.int32),
                "last_step": np.array(last_steps, dtype=np.int32),
                "trigger_step": np.array(trigger_steps, dtype=np.int32),
                "reference_tokens": np.full(epochs_n, p.reference_tokens, dtype=np.int32),
                "build_time_s": np.zeros(epochs_n, dtype=np.float64),
                "kept": kept,
                "keep_ratio": kept.astype(np.float64) / m,
                "masks": packed,
                **{k: np.tile(v, (epochs_n, 1)) for k, v in extras.items()},
            },
            "drift_checks": {
                "step": fired,
                "similarity": nothing,
                "mu": nothing,
                "sigma": nothing,
                "threshold": nothing,
                "counter": np.full(fired.size, p.c0, dtype=np.int32),
                "detected": np.ones(fired.size, dtype=bool),
                "fired": np.ones(fired.size, dtype=bool),
            },
            "retriggers": {"step": fired, "epoch": np.arange(1, fired.size + 1, dtype=np.int32)},
            "figure5": {"window": FIGURE5_WINDOW, "similarity": np.zeros(0, dtype=np.float64)},
        }
    )
