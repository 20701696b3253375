"""Recording a policy that acts through forward hooks, token by token, on a real model.

A hooked policy (policies/_hooked.py) supplies rules; this module applies them: FFN
neuron masks multiply u (the input of down_proj), head masks multiply the heads' outputs
(the input of o_proj), and pruned weights are zeroed in place for the run (restored by
`close`). Prompt-derived masks come into force at the first generated token, after a
dense prefill, as DART's do; a per-token mask is chosen inside every decode forward;
weight pruning holds from the prefill on.

The rules object (`HookRules`) is duck-typed so that this layer never imports a policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from dartsim.record.builder import TraceBuilder
from dartsim.record.hooks import decoder_layers
from dartsim.record.loop import Controller
from dartsim.record.model import LoadedModel
from dartsim.trace.schema import new_policy_section

PROJECTIONS = (
    ("self_attn.q_proj", "attn_in"),
    ("self_attn.k_proj", "attn_in"),
    ("self_attn.v_proj", "attn_in"),
    ("self_attn.o_proj", "o_in"),
    ("mlp.gate_proj", "mlp_in"),
    ("mlp.up_proj", "mlp_in"),
    ("mlp.down_proj", "down_in"),
)
"""Every decoder linear layer and the kind of input it reads (calibration statistics)."""


class HookRules(Protocol):
    """What a hooked policy decides (policies/_hooked.py HookedPolicy implements it)."""

    name: str
    observes_prompt: tuple[str, ...]
    """Activations collected during the prefill for `prompt_masks`: "u", "o"."""
    per_token: bool

    def prepare(self, runner: HookedRecorder) -> None: ...

    def prompt_masks(
        self, runner: HookedRecorder, prompt_ids: list[int], observed: dict[str, list[torch.Tensor]]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]: ...

    def token_mask(
        self, runner: HookedRecorder, layer: int, x: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        """Bool [T, m]: each token's kept neurons, from the FFN input x [T, d] and the true
        u [T, m] (per-token policies)."""
        ...

    def trace_params(self, runner: HookedRecorder) -> dict[str, Any]: ...

    def weight_format(self) -> str: ...


class HookedRecorder:
    """A hooked policy prepared on one loaded model: offline state (pruned weights,
    predictors, category masks) is built once at construction; `controller` records one
    prompt."""

    def __init__(self, loaded: LoadedModel, rules: HookRules, stats: Any) -> None:
        self.loaded = loaded
        self.rules = rules
        self.stats = stats
        spec = loaded.spec
        self.layers = decoder_layers(loaded.model)
        self.L, self.m, self.heads = spec.num_layers, spec.intermediate_size, spec.num_heads
        self.ffn_masks: torch.Tensor | None = None  # bool [L, m] in force
        self.head_masks: torch.Tensor | None = None  # bool [L, H] in force
        self.token_masks: list[torch.Tensor | None] = [None] * self.L  # per-token, last forward
        self.per_token = False
        self.observed: dict[str, list[torch.Tensor]] | None = None
        self.weight_density = torch.ones(self.L, dtype=torch.float64)
        self.state: dict[str, Any] = {}
        """The policy's offline and per-prompt state (predictors, category masks, ...)."""
        self._x: list[torch.Tensor | None] = [None] * self.L
        self._saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self._handles: list[Any] = []
        rules.prepare(self)
        self._install()

    # -- offline --------------------------------------------------------------------------

    def prune_weights(self, mask_of: Callable[[torch.Tensor, str, int], torch.Tensor]) -> None:
        """Zero, in every decoder linear layer, the weights `mask_of(weight, input kind,
        layer)` drops (restored by `close`); records each layer's kept density."""
        kept_total = torch.zeros(self.L, dtype=torch.float64)
        total = torch.zeros(self.L, dtype=torch.float64)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                for path, kind in PROJECTIONS:
                    weight = layer.get_submodule(path).weight
                    mask = mask_of(weight.detach().cpu(), kind, i)
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
            if self.observed is not None and "u" in self.observed:
                self.observed["u"].append(u.detach()[0].double().cpu())
            if self.per_token:
                x = self._x[i]
                assert x is not None
                mask = self.rules.token_mask(self, i, x[0], u.detach()[0])
                self.token_masks[i] = mask[-1]
                return (u * mask.to(u.device, u.dtype).unsqueeze(0),)
            if self.ffn_masks is not None:
                return (u * self.ffn_masks[i].to(u.device, u.dtype),)
            return None

        return hook

    def _o_in(self, i: int) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> Any:
            o = args[0]
            if self.observed is not None and "o" in self.observed:
                self.observed["o"].append(o.detach()[0].double().cpu())
            if self.head_masks is not None:
                hd = o.shape[-1] // self.heads
                scale = self.head_masks[i].repeat_interleave(hd).to(o.device, o.dtype)
                return (o * scale,)
            return None

        return hook

    # -- per prompt -----------------------------------------------------------------------

    def epoch_record(self, masks: torch.Tensor, seconds: float) -> dict[str, Any]:
        """A trace epoch for FFN masks [L, m] (no DART statistics: NaN)."""
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

    def controller(self, builder: TraceBuilder) -> HookedController:
        return HookedController(self, builder)

    def policy_section(self) -> dict[str, Any]:
        """The trace's `policy` section for the latest run."""
        rules = self.rules
        fmt = rules.weight_format()
        return new_policy_section(
            rules.name,
            self.L,
            self.heads,
            rules.trace_params(self),
            self.head_masks,
            fmt,
            self.weight_density if fmt != "dense" else None,
        )


class HookedController(Controller):
    """One recording of a hooked policy: dense prefill (observed when the policy needs the
    prompt), its masks in force from the first generated token."""

    def __init__(self, runner: HookedRecorder, builder: TraceBuilder) -> None:
        self.runner = runner
        self.builder = builder
        self.epoch = -1
        runner.ffn_masks = runner.head_masks = None
        runner.per_token = False

    def before_prefill(self) -> None:
        observes = self.runner.rules.observes_prompt
        self.runner.observed = {kind: [] for kind in observes} if observes else None

    def after_prefill(self, prompt_ids: list[int]) -> None:
        runner, builder = self.runner, self.builder
        start = time.perf_counter()
        observed = runner.observed or {}
        runner.ffn_masks, runner.head_masks = runner.rules.prompt_masks(runner, prompt_ids, observed)
        runner.observed = None
        if runner.ffn_masks is not None:
            record = runner.epoch_record(runner.ffn_masks, time.perf_counter() - start)
            builder.epoch({**record, "first_step": builder.step_count, "trigger_step": -1})
            self.epoch = 0
        runner.per_token = runner.rules.per_token

    def decode_epoch(self) -> int:
        return self.epoch + 1 if self.runner.per_token else self.epoch

    def after_forward(self, step_index: int) -> None:
        runner = self.runner
        if runner.per_token:
            masks = torch.stack([m for m in runner.token_masks if m is not None])
            self.builder.epoch(
                {**runner.epoch_record(masks, 0.0), "first_step": step_index, "trigger_step": -1}
            )
            self.epoch += 1

    def after_decode(self, step_index: int) -> None:
        pass

    def trace_sections(self) -> dict[str, Any]:
        return {"policy": self.runner.policy_section()}
