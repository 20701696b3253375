"""Running DART on a Hugging Face model, one token at a time, and recording what happens.

The recorder owns the DART state machine: dense collection (scores, sensitivities and the
attention outputs of the reference tokens), mask epochs, drift checks every tau tokens,
and re-triggers. Every forward step and every mask build is timed. A `TraceBuilder`
collects the record; `NullTraceBuilder` skips all bookkeeping so that the cost of tracing
itself can be measured.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dartsim import __version__
from dartsim.dart import drift, policy
from dartsim.dart.hf import LoadedModel
from dartsim.dart.hooks import MaskableLinear, decoder_layers, wrap_ffn
from dartsim.dart.params import FIGURE5_WINDOW, MASK_APPLY, PUBLISHED_ROUNDS, DartParams
from dartsim.dart.params import RECORD_MODES as MODES
from dartsim.errors import UserError
from dartsim.trace.schema import (
    CHECK_DTYPES,
    FORMAT_NAME,
    PHASES,
    SCHEMA_VERSION,
    model_section,
    pack_mask,
)

"""dart: masks with drift detection and re-triggers; static: the first mask for the whole
run (drift is still checked and recorded, never acted on); dense: no mask at all (the
reference is still built, for Figure 5)."""
VOCAB_PROXY_CHUNK = 4096
"""Vocabulary rows per block when computing the published code's vocabulary proxy."""


@dataclass
class RecordOptions:
    max_new_tokens: int = 500
    min_new_tokens: int = 0
    ignore_eos: bool = False
    temperature: float = 0.0
    mask_apply: str = "zero"
    mode: str = "dart"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise UserError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise UserError(
                f"--min-new-tokens must lie in [0, {self.max_new_tokens}], got {self.min_new_tokens}"
            )
        if self.temperature < 0:
            raise UserError(f"--temperature must be zero (greedy) or positive, got {self.temperature}")
        if self.mask_apply not in MASK_APPLY:
            raise UserError(f"--mask-apply must be one of {', '.join(MASK_APPLY)}, got {self.mask_apply!r}")
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass
class _Accumulator:
    """What a collection gathers per layer: neuron scores, sensitivity sums, attention outputs."""

    layers: int
    width: int
    scores: torch.Tensor = field(init=False)
    sens_sum: torch.Tensor = field(init=False)
    cos_sum: torch.Tensor = field(init=False)
    ratio_sum: torch.Tensor = field(init=False)
    tokens: int = 0
    attention: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = torch.zeros(self.layers, self.width, dtype=torch.float64)
        self.sens_sum = torch.zeros(self.layers, dtype=torch.float64)
        self.cos_sum = torch.zeros(self.layers, dtype=torch.float64)
        self.ratio_sum = torch.zeros(self.layers, dtype=torch.float64)


class TraceBuilder:
    """Collects everything a v1 trace holds, step by step."""

    def __init__(self) -> None:
        self.steps: dict[str, list[Any]] = {
            k: [] for k in ("phase", "tokens", "context_len", "epoch", "time_s")
        }
        self.epochs: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.retriggers: list[dict[str, int]] = []
        self.figure5: list[float] = []

    def step(self, phase: str, tokens: int, context_len: int, epoch: int, seconds: float) -> None:
        self.steps["phase"].append(PHASES.index(phase))
        self.steps["tokens"].append(tokens)
        self.steps["context_len"].append(context_len)
        self.steps["epoch"].append(epoch)
        self.steps["time_s"].append(seconds)
        if epoch >= 0:
            self.epochs[epoch]["last_step"] = len(self.steps["phase"]) - 1

    def epoch(self, record: dict[str, Any]) -> None:
        record["masks"] = pack_mask(record.pop("mask_bool"))
        self.epochs.append(record)

    def check(self, step: int, result: drift.DriftCheck) -> None:
        self.checks.append({"step": step, **result.__dict__})

    def retrigger(self, step: int) -> None:
        self.retriggers.append({"step": step, "epoch": -1})

    def retrigger_resolved(self, epoch: int) -> None:
        if self.retriggers and self.retriggers[-1]["epoch"] == -1:
            self.retriggers[-1]["epoch"] = epoch

    def similarity(self, value: float) -> None:
        self.figure5.append(value)

    @property
    def step_count(self) -> int:
        return len(self.steps["phase"])

    def tensors(self, layers: int, width: int) -> dict[str, Any]:
        """The steps, epochs, checks, re-triggers and Figure 5 sections as tensors."""
        from dartsim.trace.schema import packed_width

        dtypes = {
            "phase": torch.uint8,
            "tokens": torch.int32,
            "context_len": torch.int32,
            "epoch": torch.int32,
            "time_s": torch.float64,
        }
        steps = {k: torch.tensor(v, dtype=dtypes[k]) for k, v in self.steps.items()}
        e = self.epochs
        epochs = {
            "first_step": torch.tensor([r["first_step"] for r in e], dtype=torch.int32),
            "last_step": torch.tensor(
                [r.get("last_step", r["first_step"] - 1) for r in e], dtype=torch.int32
            ),
            "trigger_step": torch.tensor([r["trigger_step"] for r in e], dtype=torch.int32),
            "reference_tokens": torch.tensor([r["reference_tokens"] for r in e], dtype=torch.int32),
            "build_time_s": torch.tensor([r["build_time_s"] for r in e], dtype=torch.float64),
            "kept": torch.stack([r["kept"] for r in e]) if e else torch.zeros(0, layers, dtype=torch.int32),
            "masks": torch.stack([r["masks"] for r in e])
            if e
            else torch.zeros(0, layers, packed_width(width), dtype=torch.uint8),
        }
        for key in ("keep_ratio", "s_bar", "importance", "depth", "pruning"):
            epochs[key] = (
                torch.stack([r[key] for r in e]) if e else torch.zeros(0, layers, dtype=torch.float64)
            )
        checks = {k: torch.tensor([c[k] for c in self.checks], dtype=t) for k, t in CHECK_DTYPES.items()}
        retriggers = {
            "step": torch.tensor([r["step"] for r in self.retriggers], dtype=torch.int32),
            "epoch": torch.tensor([r["epoch"] for r in self.retriggers], dtype=torch.int32),
        }
        figure5 = {
            "window": FIGURE5_WINDOW,
            "similarity": torch.tensor(self.figure5, dtype=torch.float64),
        }
        return {
            "steps": steps,
            "epochs": epochs,
            "drift_checks": checks,
            "retriggers": retriggers,
            "figure5": figure5,
        }


class NullTraceBuilder(TraceBuilder):
    """Keeps only what the run itself needs (the step count and epoch indices)."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._epochs = 0

    def step(self, phase: str, tokens: int, context_len: int, epoch: int, seconds: float) -> None:
        self._count += 1

    def epoch(self, record: dict[str, Any]) -> None:
        self._epochs += 1

    def check(self, step: int, result: drift.DriftCheck) -> None:
        pass

    def retrigger(self, step: int) -> None:
        pass

    def retrigger_resolved(self, epoch: int) -> None:
        pass

    def similarity(self, value: float) -> None:
        pass

    @property
    def step_count(self) -> int:
        return self._count

    @property
    def epoch_count(self) -> int:
        return self._epochs


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class DartRecorder:
    """DART on one sequence of a loaded model: prefill, then greedy (or sampled) decoding."""

    def __init__(self, loaded: LoadedModel, params: DartParams, options: RecordOptions) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.params = params
        self.options = options
        self.device = next(self.model.parameters()).device.type
        spec = loaded.spec
        self.layers = spec.num_layers
        self.width = spec.intermediate_size
        self.ffn = wrap_ffn(self.model)
        self.depth = policy.depth_factor(
            self.layers, params.alpha_e, params.alpha_l, params.beta_e, params.beta_l
        )
        self.proxy = self._vocab_proxy() if params.score == "vocab-proxy" else None
        self.acc: _Accumulator | None = None
        self.masks: list[torch.Tensor] | None = None  # float 0/1 [m] per layer (zero mode)
        self.kept_idx: list[torch.Tensor] | None = None
        self._y: dict[int, torch.Tensor] = {}
        self._attention: torch.Tensor | None = None
        self._handles: list[Any] = []
        self._install_hooks()

    # -- observation ----------------------------------------------------------------------

    def _install_hooks(self) -> None:
        layers = decoder_layers(self.model)
        for index, layer in enumerate(layers):
            self._handles.append(
                layer.post_attention_layernorm.register_forward_pre_hook(self._y_hook(index))
            )
            self._handles.append(layer.mlp.register_forward_hook(self._ffn_hook(index)))
            down: MaskableLinear = self.ffn[index][2]
            down.observer = self._u_observer(index)
        self._handles.append(layers[-1].self_attn.register_forward_hook(self._attention_hook))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        for _, _, down in self.ffn:
            down.observer = None
        self._set_kept(None)

    def _y_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> None:
            self._y[index] = args[0].detach()

        return hook

    def _ffn_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: torch.Tensor) -> None:
            acc = self.acc
            if acc is None:
                return
            y = self._y.pop(index)[0]
            f = output.detach()[0]
            if self.params.variant == "paper":
                acc.sens_sum[index] += policy.sensitivity_per_token(y, y + f).sum()
            else:
                y64, f64 = y.double(), f.double()
                cos = torch.nn.functional.cosine_similarity(y64, f64, dim=-1)
                ratio = (f64 - y64).norm(dim=-1) / y64.norm(dim=-1)
                acc.cos_sum[index] += cos.sum()
                acc.ratio_sum[index] += ratio.sum()

        return hook

    def _u_observer(self, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def observe(u: torch.Tensor) -> torch.Tensor:
            if self.masks is not None and self.options.mask_apply == "zero":
                u = u * self.masks[index]
            acc = self.acc
            if acc is not None:
                squares = u.detach().reshape(-1, u.shape[-1]).double().pow(2).sum(dim=0)
                if squares.numel() == self.width:
                    acc.scores[index] += squares
                else:  # compact: k-wide u, scattered back to neuron indices
                    assert self.kept_idx is not None
                    acc.scores[index].index_add_(0, self.kept_idx[index].cpu(), squares.cpu())
            return u

        return observe

    def _attention_hook(self, _module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        self._attention = out.detach()[0].double().cpu()

    # -- masks ----------------------------------------------------------------------------

    def _vocab_proxy(self) -> torch.Tensor:
        """The published code's per-neuron vocabulary proxy, max_v |E W_down|: -> [L, m]."""
        emb = self.model.get_input_embeddings().weight.detach()
        rows = []
        with torch.no_grad():
            for _, _, down in self.ffn:
                best = torch.zeros(self.width, dtype=emb.dtype, device=emb.device)
                for start in range(0, emb.shape[0], VOCAB_PROXY_CHUNK):
                    block = emb[start : start + VOCAB_PROXY_CHUNK] @ down.weight
                    best = torch.maximum(best, block.abs().amax(dim=0))
                rows.append(best.double().cpu())
        return torch.stack(rows)

    def _set_kept(self, kept: list[torch.Tensor] | None) -> None:
        self.kept_idx = kept
        if kept is None:
            self.masks = None
            for gate, up, down in self.ffn:
                for module in (gate, up, down):
                    module.set_kept(None)
            return
        dtype = self.ffn[0][0].weight.dtype
        device = self.ffn[0][0].weight.device
        if self.options.mask_apply == "zero":
            masks = []
            for idx in kept:
                mask = torch.zeros(self.width, dtype=dtype, device=device)
                mask[idx.to(device)] = 1
                masks.append(mask)
            self.masks = masks
        else:
            self.masks = None
            for (gate, up, down), idx in zip(self.ffn, kept, strict=True):
                on_device = idx.to(device)
                gate.set_kept(on_device)
                up.set_kept(on_device)
                down.set_kept(on_device)

    def _s_bar(self, acc: _Accumulator) -> torch.Tensor:
        n = max(acc.tokens, 1)
        if self.params.variant == "paper":
            return acc.sens_sum / n
        return (1.0 - acc.cos_sum / n) * (acc.ratio_sum / n)

    def _build_mask(self, acc: _Accumulator, apply: bool) -> tuple[dict[str, Any], drift.Reference]:
        """Allocate budgets, pick top-k neurons and (when `apply`) put the masks in force."""
        p = self.params
        _sync(self.device)
        start = time.perf_counter()
        s_bar = self._s_bar(acc)
        if p.variant == "paper":
            importance = policy.importance_paper(s_bar)
            pruning = policy.allocate_paper(importance, self.depth, p.sparsity, p.p_min, p.p_max)
        else:
            importance = policy.importance_published(s_bar)
            pruning = policy.allocate_published(
                importance, self.depth, p.sparsity, p.p_min, p.p_max, PUBLISHED_ROUNDS
            )
        counts = policy.kept_neurons(pruning, self.width)
        scores = acc.scores
        if self.proxy is not None:
            scores = scores.sqrt() * self.proxy
        masks = torch.stack([policy.top_k_mask(scores[i], counts[i]) for i in range(self.layers)])
        if apply:
            self._set_kept([torch.nonzero(row).flatten() for row in masks])
        _sync(self.device)
        elapsed = time.perf_counter() - start
        usable = (len(acc.attention) // p.tau) * p.tau
        reference = drift.build_reference(torch.stack(acc.attention[-usable:]), p.tau)
        record = {
            "kept": torch.tensor(counts, dtype=torch.int32),
            "keep_ratio": torch.tensor(counts, dtype=torch.float64) / self.width,
            "s_bar": s_bar.clone(),
            "importance": importance.clone(),
            "depth": self.depth.clone(),
            "pruning": pruning.clone(),
            "mask_bool": masks,
            "build_time_s": elapsed,
            "reference_tokens": usable,
        }
        return record, reference

    # -- the run --------------------------------------------------------------------------

    def _forward(self, ids: torch.Tensor, cache: Any, position: int) -> tuple[torch.Tensor, float]:
        positions = torch.arange(position, position + ids.shape[1], device=ids.device).unsqueeze(0)
        _sync(self.device)
        start = time.perf_counter()
        with torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, position_ids=positions)
        _sync(self.device)
        return out.logits[0, -1].detach(), time.perf_counter() - start

    def _choose(self, logits: torch.Tensor, allow_eos: bool, eos: set[int], gen: torch.Generator) -> int:
        scores = logits.double().cpu()
        if not allow_eos and eos:
            scores[list(eos)] = -math.inf
        if self.options.temperature == 0:
            return int(torch.argmax(scores))
        probs = torch.softmax(scores / self.options.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))

    def run(
        self,
        prompt_ids: list[int],
        builder: TraceBuilder,
        eos_ids: set[int],
        summary: dict[str, Any],
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        """Generate up to max_new_tokens after the prompt, filling `builder` and `summary`
        (generated ids, whether EOS stopped it) as it goes, so that after an exception or
        an interrupt both still hold every completed step."""
        from transformers.cache_utils import DynamicCache

        p, o = self.params, self.options
        gen = torch.Generator().manual_seed(o.seed)
        device = next(self.model.parameters()).device
        cache = DynamicCache()
        summary.update(generated_ids=[], stopped_at_eos=False)
        epoch = -1
        trigger_step = -1
        counter = 0
        first_reference: drift.Reference | None = None
        history: list[torch.Tensor] = []

        def new_acc() -> _Accumulator:
            return _Accumulator(self.layers, self.width)

        def put_mask_in_force(acc: _Accumulator, trigger_step: int) -> None:
            nonlocal epoch, counter, reference, first_reference, state, window
            apply = o.mode != "dense"
            record, ref = self._build_mask(acc, apply)
            reference = ref
            if first_reference is None:
                first_reference = ref
            counter = 0
            window = new_acc()
            if not apply:
                state = "dense"
                self.acc = None
                return
            record["first_step"] = builder.step_count
            record["trigger_step"] = trigger_step
            builder.epoch(record)
            epoch += 1
            builder.retrigger_resolved(epoch)
            state = "masked"
            self.acc = window

        reference: drift.Reference | None = None
        window = new_acc()
        collection = new_acc()
        need = p.reference_tokens
        state = "collect"
        self.acc = collection if p.prompt_in_reference else None

        ids = torch.tensor([prompt_ids], device=device)
        logits, seconds = self._forward(ids, cache, 0)
        position = len(prompt_ids)
        builder.step("prefill", len(prompt_ids), position, -1, seconds)
        if p.prompt_in_reference:
            collection.tokens += len(prompt_ids)
            # The prompt's attention outputs of its last whole windows form the reference.
            assert self._attention is not None
            collection.attention.extend(self._attention[-need:].unbind(0))
            if len(collection.attention) < p.tau:
                raise UserError(
                    f"the prompt has {len(prompt_ids)} tokens, fewer than tau={p.tau}: it "
                    "cannot serve as the reference (drop --prompt-in-reference)"
                )
            put_mask_in_force(collection, -1)
        else:
            self.acc = collection

        generated: list[int] = []
        while True:
            allow_eos = not o.ignore_eos and len(generated) >= o.min_new_tokens
            token = self._choose(logits, allow_eos, eos_ids, gen)
            generated.append(token)
            summary["generated_ids"] = generated
            if on_token is not None:
                on_token(token)
            if token in eos_ids and allow_eos:
                summary["stopped_at_eos"] = True
                break
            if len(generated) >= o.max_new_tokens:
                break
            if self.acc is not None:
                self.acc.tokens += 1
            ids = torch.tensor([[token]], device=device)
            logits, seconds = self._forward(ids, cache, position)
            position += 1
            step_index = builder.step_count
            builder.step("decode", 1, position, epoch if state == "masked" else -1, seconds)
            assert self._attention is not None
            att = self._attention[-1]
            history.append(att)
            if self.acc is not None:
                self.acc.attention.append(att)
            if first_reference is not None and len(history) >= FIGURE5_WINDOW:
                recent = torch.stack(history[-FIGURE5_WINDOW:])
                builder.similarity(drift.window_similarity(recent, first_reference.mean))
            else:
                builder.similarity(math.nan)

            if state == "collect":
                if len(collection.attention) >= need:
                    put_mask_in_force(collection, trigger_step)
            elif state == "masked" and len(window.attention) == p.tau:
                assert reference is not None
                result = drift.check_window(
                    torch.stack(window.attention), reference, counter, p.delta, p.c0, p.variant
                )
                counter = result.counter
                builder.check(step_index, result)
                if result.fired and o.mode == "dart" and p.retrigger:
                    builder.retrigger(step_index)
                    trigger_step = step_index
                    self._set_kept(None)
                    state = "collect"
                    if p.variant == "paper":
                        collection = window  # the detection window joins the new reference
                        need = p.reference_tokens
                    else:
                        collection = new_acc()  # published code: discard it, run dense
                        need = p.masking_step
                    self.acc = collection
                else:
                    window = new_acc()
                    self.acc = window
        self.close()


def run_metadata(loaded: LoadedModel, params: DartParams, options: RecordOptions) -> dict[str, Any]:
    """The model, DART and library-version sections of a trace."""
    import transformers

    spec = loaded.spec
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "synthetic": False,
        "created_by": f"dartsim {__version__}",
        "seed": options.seed,
        "versions": {
            "dartsim": __version__,
            "torch": str(torch.__version__),
            "transformers": str(transformers.__version__),
            "python": platform.python_version(),
        },
        "model": model_section(
            spec,
            loaded.source,
            loaded.random_weights,
            loaded.dtype,
            str(next(loaded.model.parameters()).device.type),
        ),
        "dart": {**params.as_dict(), "mode": options.mode, "mask_apply": options.mask_apply},
    }
