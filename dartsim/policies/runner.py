"""Running a non-DART policy on a real model, token by token, and recording its trace.

The policy's rules come from its own module (policies/<name>.py); this module applies
them with forward hooks: FFN neuron masks multiply u (the input of down_proj), head
masks multiply the heads' outputs (the input of o_proj), and pruned weights are zeroed
in place for the run (and restored after). Prompt-derived masks (static, dsgp, kgds)
come into force at the first generated token, after a dense prefill, as DART's do;
Deja Vu's per-token masks are chosen inside every decode forward; weight pruning holds
from the prefill on. `forced_ids` feeds given tokens instead of choosing them (teacher
forcing, for quality measurements).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from dartsim.dart.hf import LoadedModel
from dartsim.dart.hooks import decoder_layers
from dartsim.dart.trace_builder import TraceBuilder
from dartsim.errors import UserError
from dartsim.names import WEIGHT_FORMATS
from dartsim.policies import dejavu, dsgp, kgds, policy_info, semistructured, static, wanda
from dartsim.policies.calibration import CalibrationStats
from dartsim.trace.schema import new_policy_section

NEEDS_CALIBRATION = ("dejavu", "wanda", "2:4", "kgds")
UNSTRUCTURED_FORMATS = ("bitmap", "csr")
PROJECTIONS = (
    ("self_attn.q_proj", "attn_in"),
    ("self_attn.k_proj", "attn_in"),
    ("self_attn.v_proj", "attn_in"),
    ("self_attn.o_proj", "o_in"),
    ("mlp.gate_proj", "mlp_in"),
    ("mlp.up_proj", "mlp_in"),
    ("mlp.down_proj", "down_in"),
)


@dataclass(frozen=True)
class PolicyConfig:
    """A policy and its settings. `sparsity` is the fraction pruned of what the policy
    prunes (FFN neurons, or weights for wanda; 2:4 is always 0.5)."""

    name: str
    sparsity: float = 0.5
    head_sparsity: float = 0.25
    """dsgp: fraction of attention heads pruned per layer."""
    oracle: bool = False
    """dejavu: choose each token's neurons from its true activations (an upper bound)."""
    rank: int = dejavu.DEFAULT_RANK
    core_fraction: float = kgds.DEFAULT_CORE_FRACTION
    weight_format: str = "bitmap"
    """wanda: how the pruned weights are stored (bitmap or csr)."""

    def __post_init__(self) -> None:
        info = policy_info(self.name)
        if info.name == "dart":
            raise UserError(
                "the dart policy is recorded by DART's own recorder (dartsim record --policy dart)"
            )
        if not 0.0 <= self.sparsity < 1.0 or math.isnan(self.sparsity):
            raise UserError(f"--sparsity must lie in [0, 1), got {self.sparsity}")
        if not 0.0 <= self.head_sparsity < 1.0 or math.isnan(self.head_sparsity):
            raise UserError(f"--head-sparsity must lie in [0, 1), got {self.head_sparsity}")
        if self.rank < 1:
            raise UserError(f"--predictor-rank must be positive, got {self.rank}")
        if not 0.0 <= self.core_fraction <= 1.0:
            raise UserError(f"--core-fraction must lie in [0, 1], got {self.core_fraction}")
        if self.weight_format not in UNSTRUCTURED_FORMATS:
            raise UserError(f"--weight-format must be one of {', '.join(UNSTRUCTURED_FORMATS)}")

    @property
    def effective_sparsity(self) -> float:
        if self.name == "dense":
            return 0.0
        return semistructured.N_KEPT / semistructured.M_GROUP if self.name == "2:4" else self.sparsity

    def params(self) -> dict[str, Any]:
        """What the trace records under policy.params (only the settings that apply)."""
        p: dict[str, Any] = {"sparsity": self.effective_sparsity}
        if self.name == "dsgp":
            p["head_sparsity"] = self.head_sparsity
        if self.name == "dejavu":
            p.update(oracle=self.oracle, predictor_rank=0 if self.oracle else self.rank)
        if self.name == "kgds":
            p["core_fraction"] = self.core_fraction
        if self.name == "wanda":
            p["weight_format"] = self.weight_format
        return p

    def label(self) -> str:
        extra = " oracle" if self.oracle else ""
        return f"{self.name}{extra} {self.effective_sparsity:.0%}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyRunner:
    """One policy on one loaded model. Offline state (pruned weights, predictors, KG-DS
    masks) is built at construction from `stats`; `run` records one prompt."""

    def __init__(self, loaded: LoadedModel, config: PolicyConfig, stats: CalibrationStats | None) -> None:
        if config.name in NEEDS_CALIBRATION and stats is None:
            raise ValueError(f"policy {config.name} needs calibration statistics")
        self.loaded = loaded
        self.config = config
        self.stats = stats
        spec = loaded.spec
        self.layers = decoder_layers(loaded.model)
        self.L, self.m, self.heads = spec.num_layers, spec.intermediate_size, spec.num_heads
        self.ffn_masks: torch.Tensor | None = None  # bool [L, m] in force
        self.head_masks: torch.Tensor | None = None  # bool [L, H] in force
        self.token_masks: list[torch.Tensor | None] = [None] * self.L  # dejavu, last forward
        self.per_token = False
        self.observed: dict[str, list[torch.Tensor]] | None = None
        self._x: list[torch.Tensor | None] = [None] * self.L
        self._saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self.weight_density = torch.ones(self.L, dtype=torch.float64)
        self.predictors: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.category: str | None = None
        self._handles: list[Any] = []
        self._prepare()
        self._install()

    # -- offline --------------------------------------------------------------------------

    def _prepare(self) -> None:
        c, stats = self.config, self.stats
        if c.name in ("wanda", "2:4"):
            assert stats is not None
            self._prune_weights(stats)
        if c.name == "dejavu" and not c.oracle:
            assert stats is not None
            self.predictors = [
                dejavu.fit_predictor_from_moments(stats.xtx[i], stats.xty[i], c.rank) for i in range(self.L)
            ]
        if c.name == "kgds":
            assert stats is not None
            _, self.category_masks = kgds.core_and_category_masks(
                stats.saliency, stats.category_saliency, 1.0 - c.sparsity, c.core_fraction
            )

    def _prune_weights(self, stats: CalibrationStats) -> None:
        kept_total = torch.zeros(self.L, dtype=torch.float64)
        total = torch.zeros(self.L, dtype=torch.float64)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                for path, kind in PROJECTIONS:
                    module = layer.get_submodule(path)
                    weight = module.weight
                    scores = wanda.wanda_scores(weight.detach().cpu(), stats.input_sq[kind][i].sqrt())
                    if self.config.name == "2:4":
                        mask = semistructured.n_m_mask(scores)
                    else:
                        mask = wanda.unstructured_mask(scores, self.config.sparsity)
                    self._saved.append((weight, weight.detach().clone()))
                    weight.mul_(mask.to(weight.device, weight.dtype))
                    kept_total[i] += int(mask.sum())
                    total[i] += mask.numel()
        self.weight_density = kept_total / total

    # -- hooks ----------------------------------------------------------------------------

    def _install(self) -> None:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.mlp.register_forward_pre_hook(self._mlp_in(i)))
            self._handles.append(layer.mlp.down_proj.register_forward_pre_hook(self._down_in(i)))
            self._handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._o_in(i)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        with torch.no_grad():
            for weight, original in self._saved:
                weight.copy_(original)
        self._saved = []

    def _mlp_in(self, i: int) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> None:
            self._x[i] = args[0].detach()

        return hook

    def _down_in(self, i: int) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> Any:
            u = args[0]
            if self.observed is not None:
                self.observed["u"].append(u.detach()[0].double().cpu())
            if self.per_token:
                if self.config.oracle:
                    scores = u.detach()[0].abs()
                else:
                    x = self._x[i]
                    assert x is not None
                    scores = dejavu.predicted_scores(x[0].cpu(), *self.predictors[i])
                mask = dejavu.token_masks(scores.cpu(), 1.0 - self.config.sparsity)
                self.token_masks[i] = mask[-1]
                return (u * mask.to(u.device, u.dtype).unsqueeze(0),)
            if self.ffn_masks is not None:
                return (u * self.ffn_masks[i].to(u.device, u.dtype),)
            return None

        return hook

    def _o_in(self, i: int) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> Any:
            o = args[0]
            if self.observed is not None:
                self.observed["o"].append(o.detach()[0].double().cpu())
            if self.head_masks is not None:
                hd = o.shape[-1] // self.heads
                scale = self.head_masks[i].repeat_interleave(hd).to(o.device, o.dtype)
                return (o * scale,)
            return None

        return hook

    # -- per prompt -----------------------------------------------------------------------

    def _prompt_masks(self, prompt_ids: list[int]) -> None:
        """After the dense prefill: the masks the prompt selects (static, dsgp, kgds)."""
        c = self.config
        keep = 1.0 - c.sparsity
        if c.name == "static":
            assert self.observed is not None
            self.ffn_masks = static.static_masks(self.observed["u"], keep)
        elif c.name == "dsgp":
            assert self.observed is not None
            u, o = self.observed["u"], self.observed["o"]
            neurons = torch.stack(
                [
                    dsgp.neuron_sensitivity(u[i], self.layers[i].mlp.down_proj.weight.detach().cpu())
                    for i in range(self.L)
                ]
            )
            heads = torch.stack(
                [
                    dsgp.head_sensitivity(
                        o[i], self.layers[i].self_attn.o_proj.weight.detach().cpu(), self.heads
                    )
                    for i in range(self.L)
                ]
            )
            self.ffn_masks = dsgp.keep_top(neurons, keep)
            self.head_masks = dsgp.keep_top(heads, 1.0 - c.head_sparsity)
        elif c.name == "kgds":
            assert self.stats is not None
            embed = self.loaded.model.get_input_embeddings()
            with torch.no_grad():
                ids = torch.tensor(prompt_ids, device=embed.weight.device)
                mean = embed(ids).double().mean(dim=0).cpu()
            k = kgds.classify(mean, self.stats.centroids)
            self.category = self.stats.categories[k]
            self.ffn_masks = self.category_masks[k]

    def _epoch_record(self, masks: torch.Tensor, seconds: float) -> dict[str, Any]:
        counts = masks.sum(dim=-1)
        nan = torch.full((self.L,), math.nan, dtype=torch.float64)
        return {
            "kept": counts.to(torch.int32),
            "keep_ratio": counts.double() / self.m,
            "s_bar": nan,
            "importance": nan.clone(),
            "depth": nan.clone(),
            "pruning": 1.0 - counts.double() / self.m,
            "mask_bool": masks.clone(),
            "build_time_s": seconds,
            "reference_tokens": 0,
        }

    def _forward(self, ids: torch.Tensor, cache: Any, position: int) -> tuple[torch.Tensor, float]:
        positions = torch.arange(position, position + ids.shape[1], device=ids.device).unsqueeze(0)
        start = time.perf_counter()
        with torch.no_grad():
            out = self.loaded.model(
                input_ids=ids, past_key_values=cache, use_cache=True, position_ids=positions
            )
        return out.logits[0, -1].detach(), time.perf_counter() - start

    def run(
        self,
        prompt_ids: list[int],
        builder: TraceBuilder,
        summary: dict[str, Any],
        max_new_tokens: int,
        eos_ids: set[int],
        forced_ids: list[int] | None = None,
        on_logits: Callable[[torch.Tensor], None] | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        """Greedy generation (or `forced_ids`) under the policy, filling `builder` and
        `summary` step by step so an interruption keeps every completed step."""
        from transformers.cache_utils import DynamicCache

        c = self.config
        device = next(self.loaded.model.parameters()).device
        cache = DynamicCache()
        summary.update(generated_ids=[], stopped_at_eos=False)
        self.ffn_masks = self.head_masks = None
        self.per_token = False
        self.observed = {"u": [], "o": []} if c.name in ("static", "dsgp") else None
        logits, seconds = self._forward(torch.tensor([prompt_ids], device=device), cache, 0)
        position = len(prompt_ids)
        builder.step("prefill", position, position, -1, seconds)
        start = time.perf_counter()
        self._prompt_masks(prompt_ids)
        self.observed = None
        epoch = -1
        if self.ffn_masks is not None:
            builder.epoch({**self._epoch_record(self.ffn_masks, time.perf_counter() - start),
                           "first_step": builder.step_count, "trigger_step": -1})  # fmt: skip
            epoch = 0
        self.per_token = c.name == "dejavu"
        limit = len(forced_ids) if forced_ids is not None else max_new_tokens
        generated: list[int] = []
        while True:
            if on_logits is not None:
                on_logits(logits)
            if forced_ids is not None:
                token = forced_ids[len(generated)]
            else:
                token = int(torch.argmax(logits.double()))
            generated.append(token)
            summary["generated_ids"] = generated
            if on_token is not None:
                on_token(token)
            if forced_ids is None and token in eos_ids:
                summary["stopped_at_eos"] = True
                break
            if len(generated) >= limit:
                break
            logits, seconds = self._forward(torch.tensor([[token]], device=device), cache, position)
            position += 1
            if self.per_token:
                masks = torch.stack([m for m in self.token_masks if m is not None])
                builder.epoch({**self._epoch_record(masks, 0.0), "first_step": builder.step_count,
                               "trigger_step": -1})  # fmt: skip
                epoch += 1
            builder.step("decode", 1, position, epoch, seconds)

    def policy_section(self) -> dict[str, Any]:
        """The trace's `policy` section for this run."""
        c = self.config
        params = c.params()
        if c.name == "kgds":
            assert self.stats is not None
            params["classifier_classes"] = len(self.stats.categories)
            params["category"] = self.category or ""
        fmt = {"wanda": c.weight_format, "2:4": "2:4"}.get(c.name, "dense")
        assert fmt in WEIGHT_FORMATS
        head_masks = self.head_masks if self.head_masks is not None else None
        return new_policy_section(
            c.name,
            self.L,
            self.heads,
            params,
            head_masks,
            fmt,
            self.weight_density if fmt != "dense" else None,
        )
